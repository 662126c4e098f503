package webrtcin

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v2"
)

// The SRTP fast path. pion hands every received RTP packet through five
// goroutines before a track's reader sees it (UDP mux reader, ICE
// candidate, webrtc mux, SRTP session, track buffer), a copy and a wake-up
// each: in the load profile that chain was ~60% of the gateway's CPU. Once
// the session's DTLS handshake has given its SRTP keys (fastkeys.go), the
// socket reader takes the publisher's RTP for a track it knows (by source
// address and SSRC) out of the stream, decrypts it into a buffer of the
// track's own and wakes the track's reader: one copy and one hop. pion
// keeps STUN, DTLS, RTCP, ICE-TCP, streams not yet bound to a track, and
// whatever the fast path cannot decrypt.

const (
	// fastQueueVideo and fastQueueAudio bound the packets a track holds
	// between the socket reader and its goroutine: ~0.9 s of 2.5 Mbit/s
	// video, ~1.3 s of Opus. Beyond them packets stay on pion's path.
	fastQueueVideo = 256
	fastQueueAudio = 64
	// fastWarmEvery: one diverted packet this often also goes pion's way,
	// so pion's ICE still sees the pair carry media (its disconnect timer
	// counts received packets) and its SRTP context keeps the rollover
	// counter, should a packet have to take pion's path again. The copy
	// pion delivers is a duplicate and is dropped. Once a second is far
	// inside both needs (ICE's own checks, after 2 s with nothing heard,
	// feed the timer too; the rollover counter needs a packet in 32768,
	// minutes of video); each such packet costs four goroutine hops
	// through pion, and at 200 ms they were most of the 100-stream load's
	// goroutine wake-ups once the video ran on the socket reader.
	fastWarmEvery = time.Second
	// maxFastAuthFailures consecutive packets the fast path cannot
	// authenticate take the track off it for good: pion's path decides.
	maxFastAuthFailures = 32
	// fastHoldMax bounds how long the fast path holds its packets back for
	// the one before them still on pion's path (see hold).
	fastHoldMax = 50 * time.Millisecond
	// maxFastAddrs bounds the source addresses one track is taken from
	// (a publisher whose network changes sends from a new one).
	maxFastAddrs = 4
	// fastWakeBatch: a video track's reader is woken at a frame's last
	// packet, or when this many wait (a keyframe's burst).
	fastWakeBatch = 16
)

// fastKey is what the socket reader looks a datagram up by.
type fastKey struct {
	from netip.AddrPort // unmapped
	ssrc uint32
}

// fastTable is the transport's diverted streams. The socket readers look
// every datagram up in it without a lock; sessions change it rarely
// (a track starts, a publisher's address changes), copying the map.
type fastTable struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[map[fastKey]*fastTrack]
	// warmEvery is its tracks' fastWarmEvery (0: fastWarmEvery).
	warmEvery time.Duration
}

// warmInterval is how often a track's packet also goes pion's way:
// fastWarmEvery, or more often where ICE gives up on a publisher sooner
// (disconnected: ListenConfig.ICEDisconnectedTimeout, 0 for pion's 5 s).
func warmInterval(disconnected time.Duration) time.Duration {
	if disconnected > 0 && disconnected/4 < fastWarmEvery {
		return max(disconnected/4, 10*time.Millisecond)
	}
	return fastWarmEvery
}

func (t *fastTable) add(k fastKey, ft *fastTrack) {
	t.mu.Lock()
	defer t.mu.Unlock()
	next := map[fastKey]*fastTrack{k: ft}
	if old := t.m.Load(); old != nil {
		for ok, ov := range *old {
			next[ok] = ov
		}
		next[k] = ft
	}
	t.m.Store(&next)
}

// remove takes every key of ft out, or only the one given.
func (t *fastTable) remove(ft *fastTrack, only *fastKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.m.Load()
	if old == nil {
		return
	}
	next := make(map[fastKey]*fastTrack, len(*old))
	for k, v := range *old {
		if v != ft || (only != nil && k != *only) {
			next[k] = v
		}
	}
	t.m.Store(&next)
}

func (t *fastTable) len() int {
	if m := t.m.Load(); m != nil {
		return len(*m)
	}
	return 0
}

// take is the socket reader's question for each datagram: true when the
// fast path took it (the reader then reads the next one), false when it
// goes to pion.
func (t *fastTable) take(b []byte, from net.Addr) bool {
	ua, ok := from.(*net.UDPAddr)
	return ok && t.takeFrom(b, ua.AddrPort(), time.Now(), nil)
}

// takeFrom is take with the source as the socket gave it and the time b
// arrived. b is only read. The reader to wake is added to wakes, or woken
// at once when wakes is nil.
func (t *fastTable) takeFrom(b []byte, from netip.AddrPort, at time.Time, wakes *wakeList) bool {
	if len(b) < 12 || len(b) > maxPacket || b[0]&0xc0 != 0x80 || isRTCP(b) {
		return false
	}
	m := t.m.Load()
	if m == nil || len(*m) == 0 {
		return false
	}
	ft := (*m)[fastKey{unmapped(from), binary.BigEndian.Uint32(b[8:12])}]
	if ft == nil {
		return false
	}
	return ft.take(b, at, wakes)
}

// isRTCP: RTP and RTCP share the port (RFC 5761 §4): RTCP's packet types
// 192–223 read as payload types 64–95 with the marker bit.
func isRTCP(b []byte) bool {
	pt := b[1] & 0x7f
	return pt >= 64 && pt <= 95
}

func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// divertConn is the ICE socket as pion's UDP mux reads it, with the fast
// path's datagrams taken out.
type divertConn struct {
	*cachedAddrConn
	fast  *fastTable // nil without the fast path
	stun  *stunConn  // nil without STUN queries on this socket
	wakes *wakeList  // with recvmmsg: the batch's readers to wake
}

// newDivertConn diverts cc's datagrams; a socket has one divertConn. With
// recvmmsg, the readers of the tracks a batch fed are woken when the batch
// is done: cc's batch reader flushes them before it waits for the socket
// again.
func newDivertConn(cc *cachedAddrConn, fast *fastTable, stun *stunConn) divertConn {
	c := divertConn{cachedAddrConn: cc, fast: fast, stun: stun}
	if cc.batch != nil && fast != nil {
		c.wakes = &wakeList{}
		cc.batch.idle = c.wakes.flush
	}
	return c
}

// taken hands b to the fast path, then to the STUN client, and says
// whether one of them took it. b is only read.
func (c divertConn) taken(b []byte, from netip.AddrPort, at time.Time) bool {
	return (c.fast != nil && c.fast.takeFrom(b, from, at, c.wakes)) || (c.stun != nil && c.stun.take(b, from))
}

// ReadFrom is what pion's mux reads the socket with. With recvmmsg the
// fast path decrypts straight from the batch, and only pion's datagrams
// are copied.
func (c divertConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if cc := c.cachedAddrConn; cc.batch != nil {
		for {
			b, from, at, err := cc.batch.Next()
			if err != nil {
				c.wakes.flush()
				return 0, nil, err
			}
			if !c.taken(b, from, at) {
				// pion's handling of it may take a while: wake the
				// readers first.
				c.wakes.flush()
				return copy(p, b), cc.cache.get(from), nil
			}
		}
	}
	for {
		n, addr, err := c.cachedAddrConn.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		if ua, ok := addr.(*net.UDPAddr); !ok || !c.taken(p[:n], ua.AddrPort(), time.Now()) {
			return n, addr, nil
		}
	}
}

// wakeList is the track readers one socket reader has queued packets for
// since it last waited. Waking them all at the end of a batch, just
// before the socket reader sleeps, lets the Go scheduler run them on the
// reader's own P (a readied goroutine waits in its runnext slot) instead
// of handing each one to another thread woken for it mid-batch (the
// futex wake, spin and steal that were most of the load profile's
// scheduler share). They wait at most the rest of the batch. Used by the
// socket reader's goroutine only; nil wakes at once.
type wakeList struct{ tracks []*fastTrack }

func (w *wakeList) add(ft *fastTrack) {
	for _, t := range w.tracks {
		if t == ft {
			return
		}
	}
	w.tracks = append(w.tracks, ft)
}

// flush hands each track's packets to its consumer (kick): on this
// goroutine where the consumer may run here, else by waking its reader.
func (w *wakeList) flush() {
	if w == nil {
		return
	}
	for i, ft := range w.tracks {
		ft.kick()
		w.tracks[i] = nil
	}
	w.tracks = w.tracks[:0]
}

// fastPacket is one packet queued for a track's reader.
type fastPacket struct {
	b  []byte
	at time.Time
	// feedbackDue: recording this packet's arrival made TWCC feedback
	// due; the track's reader sends it.
	feedbackDue bool
}

// arrivalRecorder notes each packet the fast path decrypts, in socket
// order (the session's TWCC feedback), and says when feedback is due.
type arrivalRecorder interface {
	arrived(ssrc uint32, pkt []byte, at time.Time) (feedbackDue bool)
}

// trackConsumer is what a track's packets are handed to: consume, on the
// track's reader or (while inline says so) on the socket reader's own
// goroutine at the end of a batch (kick).
type trackConsumer struct {
	consume func(fastPacket)
	inline  func() bool
}

// fastTrack is one received stream (SSRC) on the fast path: the socket
// readers decrypt into its queue (take), pion's path feeds it too
// (push), and its packets go to the consumer (drain): on the track's
// reader (wait), or on the socket reader that queued them (kick).
type fastTrack struct {
	ssrc      uint32
	counters  *Counters
	frameWake bool            // video: wake the reader per frame (see take)
	arrivals  arrivalRecorder // nil: no TWCC
	wake      chan struct{}   // the reader waits on it for packets
	space     chan struct{}   // push waits on it for room

	// drainMu is held by whoever hands the queued packets to the
	// consumer, the track's reader or a socket reader: the packets go in
	// order, and the consumer's state is one goroutine's at a time.
	drainMu  sync.Mutex
	consumer atomic.Pointer[trackConsumer] // nil: the reader's alone

	mu sync.Mutex
	// gcm (the AEAD profiles) or ctx (the others) decrypts; both nil
	// until the keys are known.
	gcm       *gcmOpener
	rocAdj    uint32        // gcm: the rollover counter less the replay window's
	ctx       *srtp.Context // pion's, for the HMAC-SHA1 profiles
	hdr       rtp.Header    // DecryptRTP's scratch header
	fresh     bool          // no packet decrypted yet
	fails     int           // consecutive packets that did not authenticate
	off       bool          // off the fast path: closed, or too many failures
	closed    bool
	replay    replayWindow
	nextWarm  time.Time
	warmEvery time.Duration    // see fastWarmEvery
	addrs     []netip.AddrPort // where it is taken from, oldest first
	ring      []fastPacket
	head, n   int
	free      [][]byte // buffers of maxPacket, last in first out

	// The two paths run side by side: when the fast path takes a stream
	// (or takes it back after leaving packets to pion), the packets just
	// before are still in pion's chain, and the fast path's would
	// overtake them. So the fast path holds its packets back (held,
	// counted against the ring) until pion's path has delivered the one
	// before the first of them (holdFor), or fastHoldMax passed.
	lastPion  bool // the last packet queued came from pion's path
	owed      bool // packets were left to pion since the last release
	holding   bool
	holdFor   uint16
	holdUntil time.Time
	held      []fastPacket
}

func newFastTrack(ssrc uint32, queue int, counters *Counters) *fastTrack {
	return &fastTrack{
		ssrc: ssrc, counters: counters, fresh: true,
		wake: make(chan struct{}, 1), space: make(chan struct{}, 1),
		ring: make([]fastPacket, queue), warmEvery: fastWarmEvery,
	}
}

// buffer returns a free buffer; the caller holds mu.
func (ft *fastTrack) buffer() []byte {
	if k := len(ft.free); k > 0 {
		b := ft.free[k-1]
		ft.free = ft.free[:k-1]
		return b
	}
	return make([]byte, maxPacket)
}

// enqueue queues p; the caller holds mu, has checked there is room, and
// wakes the reader when it should.
func (ft *fastTrack) enqueue(p fastPacket) {
	ft.ring[(ft.head+ft.n)%len(ft.ring)] = p
	ft.n++
}

func (ft *fastTrack) signal() {
	select {
	case ft.wake <- struct{}{}:
	default:
	}
}

// take decrypts b, from the socket, into the queue. It returns false when
// b is to go to pion instead: the queue is full, the fast path has no
// keys or is off, b does not authenticate, or it is the packet that keeps
// pion's path warm (then it is queued too). The reader, when it is to be
// woken, is added to wakes (woken at once when wakes is nil).
func (ft *fastTrack) take(b []byte, now time.Time, wakes *wakeList) bool {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if ft.holding && !now.Before(ft.holdUntil) {
		ft.release()
	}
	if ft.off || (ft.gcm == nil && ft.ctx == nil) || ft.n+len(ft.held) == len(ft.ring) {
		ft.owed = true
		return false
	}
	buf := ft.buffer()
	seq := binary.BigEndian.Uint16(b[2:4])
	out, err := ft.decrypt(buf, b, seq)
	if err != nil {
		ft.free = append(ft.free, buf)
		ft.counters.FastAuthFailures.Add(1)
		if ft.fails++; ft.fails >= maxFastAuthFailures {
			ft.off = true
			ft.release()
		}
		ft.owed = true
		return false
	}
	first := ft.fresh
	ft.fresh, ft.fails = false, 0
	if !ft.replay.fresh(seq) {
		ft.free = append(ft.free, buf)
		return true
	}
	ft.counters.FastRTP.Add(1)
	p := fastPacket{b: out, at: now}
	if ft.arrivals != nil {
		p.feedbackDue = ft.arrivals.arrived(ft.ssrc, out, now)
	}
	switch {
	case ft.holding:
		ft.held = append(ft.held, p)
	case (first || ft.lastPion || ft.owed) && !ft.replay.seen(seq-1):
		ft.holding, ft.holdFor, ft.holdUntil = true, seq-1, now.Add(fastHoldMax)
		ft.held = append(ft.held, p)
	default:
		ft.lastPion, ft.owed = false, false
		ft.enqueue(p)
	}
	warm := !now.Before(ft.nextWarm)
	// A video frame's packets come in a burst and only its last (the
	// marker) completes it: waking the reader for the frame, not for each
	// packet, saves a goroutine wake-up per packet (the load profile's
	// scheduler share). The reader still sees every packet's arrival
	// time; a lost marker costs at most the next frame's, or the next
	// packet through pion's path.
	if !ft.frameWake || out[1]&0x80 != 0 || ft.n >= fastWakeBatch || warm {
		if wakes != nil {
			wakes.add(ft)
		} else {
			ft.signal()
		}
	}
	if !warm {
		return true
	}
	ft.nextWarm = now.Add(ft.warmEvery)
	return false
}

// decrypt decrypts b, whose sequence number is seq, into buf; the caller
// holds mu.
func (ft *fastTrack) decrypt(buf, b []byte, seq uint16) ([]byte, error) {
	if ft.gcm != nil {
		roc := ft.replay.roc(seq) + ft.rocAdj
		out, err := ft.gcm.open(buf, b, roc)
		if err != nil && ft.fresh {
			// The first packet the fast path sees may come after the
			// sequence number wrapped (the stream started near 65535)
			// with no packet before it on either path.
			if out, err = ft.gcm.open(buf, b, roc+1); err == nil {
				ft.rocAdj++
			}
		}
		return out, err
	}
	out, err := ft.ctx.DecryptRTP(buf[:0], b, &ft.hdr)
	if err != nil && ft.fresh {
		ft.ctx.SetROC(ft.ssrc, 1)
		if out, err = ft.ctx.DecryptRTP(buf[:0], b, &ft.hdr); err != nil {
			ft.ctx.SetROC(ft.ssrc, 0)
		}
	}
	return out, err
}

// push queues a packet read from pion's path (decrypted there), waiting
// for room; it drops a packet the fast path delivered already. It
// returns false once the track is closed.
func (ft *fastTrack) push(b []byte, at time.Time) bool {
	for {
		ft.mu.Lock()
		if ft.closed {
			ft.mu.Unlock()
			return false
		}
		if ft.n+len(ft.held) < len(ft.ring) {
			if len(b) < 4 || !ft.replay.fresh(binary.BigEndian.Uint16(b[2:4])) {
				ft.mu.Unlock()
				return true
			}
			buf := ft.buffer()
			ft.enqueue(fastPacket{b: buf[:copy(buf, b)], at: at})
			ft.lastPion = true
			if ft.holding && (ft.replay.seen(ft.holdFor) || !at.Before(ft.holdUntil)) {
				ft.release()
			}
			ft.signal()
			ft.mu.Unlock()
			return true
		}
		if ft.holding {
			// Full with held packets: pion's path is far behind.
			ft.release()
			ft.mu.Unlock()
			continue
		}
		ft.mu.Unlock()
		<-ft.space
	}
}

// release queues the held packets; the caller holds mu.
func (ft *fastTrack) release() {
	for i, p := range ft.held {
		ft.enqueue(p)
		ft.held[i] = fastPacket{}
	}
	ft.held = ft.held[:0]
	ft.holding, ft.lastPion, ft.owed = false, false, false
	ft.signal()
}

// wait blocks until a packet is queued (true), or the track is closed
// and drained (false). While packets are held back it wakes for their
// release, on *timer (made the first time).
func (ft *fastTrack) wait(timer **time.Timer) bool {
	for {
		ft.mu.Lock()
		ft.releaseDue()
		n, closed, holding, until := ft.n, ft.closed, ft.holding, ft.holdUntil
		ft.mu.Unlock()
		if n > 0 {
			return true
		}
		if closed {
			return false
		}
		if !holding {
			<-ft.wake
			continue
		}
		if *timer == nil {
			*timer = time.NewTimer(time.Until(until))
		} else {
			(*timer).Reset(time.Until(until))
		}
		select {
		case <-ft.wake:
		case <-(*timer).C:
		}
	}
}

// stopTimer stops wait's timer, if one was made.
func stopTimer(t **time.Timer) {
	if *t != nil {
		(*t).Stop()
	}
}

// releaseDue releases the held packets once their time is up or the
// track closed; the caller holds mu.
func (ft *fastTrack) releaseDue() {
	if ft.holding && (ft.closed || !time.Now().Before(ft.holdUntil)) {
		ft.release()
	}
}

// pop takes the next queued packet, if any, once held packets whose time
// is up are released; with none queued it says whether packets are still
// held back.
func (ft *fastTrack) pop() (p fastPacket, ok, holding bool) {
	ft.mu.Lock()
	ft.releaseDue()
	if ft.n == 0 {
		holding = ft.holding
		ft.mu.Unlock()
		return fastPacket{}, false, holding
	}
	p = ft.ring[ft.head]
	ft.ring[ft.head] = fastPacket{}
	ft.head = (ft.head + 1) % len(ft.ring)
	ft.n--
	ft.mu.Unlock()
	select {
	case ft.space <- struct{}{}:
	default:
	}
	return p, true, false
}

// drain hands every queued packet to consume, and says how many, and
// whether packets are still held back (their release is the reader's to
// wait for). The caller holds drainMu.
func (ft *fastTrack) drain(consume func(fastPacket)) (n int, holding bool) {
	for {
		p, ok, held := ft.pop()
		if !ok {
			return n, held
		}
		consume(p)
		n++
	}
}

// serve is the track's reader: it hands the queued packets to consume as
// they come, until the track is closed and drained.
func (ft *fastTrack) serve(consume func(fastPacket)) {
	var timer *time.Timer
	defer stopTimer(&timer)
	for ft.wait(&timer) {
		ft.drainMu.Lock()
		_, _ = ft.drain(consume)
		ft.drainMu.Unlock()
	}
}

// setConsumer makes c the track's consumer, for kick.
func (ft *fastTrack) setConsumer(c *trackConsumer) { ft.consumer.Store(c) }

// clearConsumer ends kick's use of the consumer: when it returns no
// socket reader is running it, nor will.
func (ft *fastTrack) clearConsumer() {
	ft.drainMu.Lock() // waits for a drain under way
	ft.consumer.Store(nil)
	ft.drainMu.Unlock()
}

// kick is the socket reader's hand-off of what it queued for the track.
// The consumer runs right here when it may (inline) and nobody else is
// draining the track: the frame goes from socket to ingest on one
// goroutine. Waking the reader instead readies a goroutine, and the Go
// scheduler, which wakes an idle P for every readied goroutine, starts a
// thread that spins, steals the reader and sleeps again: at 100 video
// streams those wake-ups and sleeps were 17–30% of the gateway's CPU
// (measured as the difference GOMAXPROCS=1 made). Else, and while packets
// are held back, the reader is woken.
func (ft *fastTrack) kick() {
	if c := ft.consumer.Load(); c != nil && c.inline() && ft.drainMu.TryLock() {
		holding := true
		if ft.consumer.Load() == c {
			var n int
			n, holding = ft.drain(c.consume)
			ft.counters.FastInline.Add(uint64(n))
		}
		ft.drainMu.Unlock()
		if !holding {
			return
		}
	}
	ft.signal()
}

func (ft *fastTrack) recycle(b []byte) {
	ft.mu.Lock()
	ft.free = append(ft.free, b[:maxPacket])
	ft.mu.Unlock()
}

// close ends the track: take gives everything to pion, push returns
// false, next returns what is queued and then false.
func (ft *fastTrack) close() {
	ft.mu.Lock()
	ft.closed, ft.off = true, true
	ft.mu.Unlock()
	for _, c := range []chan struct{}{ft.wake, ft.space} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// replayWindowWords is the replay window in 64-bit words: 1024 packets,
// wide enough for a retransmission answering a NACK after ~3.6 s of
// 2.5 Mbit/s video (SRTP's default window of 64 is 0.2 s of it).
const replayWindowWords = 16

// replayWindow is SRTP's replay check (RFC 3711 §3.3.2) over the extended
// sequence number, for packets from both paths: a packet seen already or
// older than the window is refused.
type replayWindow struct {
	started bool
	hi      uint64                    // highest extended sequence number
	bits    [replayWindowWords]uint64 // bit i: hi-i was seen
}

func (w *replayWindow) fresh(seq uint16) bool {
	if !w.started {
		// Start a cycle in, so sequence numbers before the first are
		// still representable.
		w.started, w.hi, w.bits[0] = true, 1<<16|uint64(seq), 1
		return true
	}
	ext := uint64(int64(w.hi) + int64(int16(seq-uint16(w.hi))))
	if ext > w.hi {
		w.shift(ext - w.hi)
		w.hi = ext
		w.bits[0] |= 1
		return true
	}
	back := w.hi - ext
	if back >= 64*replayWindowWords {
		return false
	}
	word, bit := back/64, uint64(1)<<(back%64)
	if w.bits[word]&bit != 0 {
		return false
	}
	w.bits[word] |= bit
	return true
}

// seen reports whether seq's packet passed (false for one older than the
// window, or before the first).
func (w *replayWindow) seen(seq uint16) bool {
	if !w.started {
		return false
	}
	ext := uint64(int64(w.hi) + int64(int16(seq-uint16(w.hi))))
	if ext > w.hi {
		return false
	}
	back := w.hi - ext
	return back < 64*replayWindowWords && w.bits[back/64]&(1<<(back%64)) != 0
}

// roc is the rollover counter of seq's packet index as the window places
// it (the window starts in its second cycle; a stream's first cycle is
// ROC 0).
func (w *replayWindow) roc(seq uint16) uint32 {
	if !w.started {
		return 0
	}
	ext := uint64(int64(w.hi) + int64(int16(seq-uint16(w.hi))))
	return uint32(ext>>16) - 1
}

// shift moves the window k packets on: bit i becomes bit i+k.
func (w *replayWindow) shift(k uint64) {
	if k >= 64*replayWindowWords {
		w.bits = [replayWindowWords]uint64{}
		return
	}
	words, bits := int(k/64), k%64
	for i := replayWindowWords - 1; i >= 0; i-- {
		var v uint64
		if j := i - words; j >= 0 {
			v = w.bits[j] << bits
			if bits > 0 && j > 0 {
				v |= w.bits[j-1] >> (64 - bits)
			}
		}
		w.bits[i] = v
	}
}
