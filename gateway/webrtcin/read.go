package webrtcin

import (
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v3"
)

// maxPacket is the largest RTP or RTCP packet read: above any MTU.
const maxPacket = 1500

// Arrivals is told of every RTP packet a track receives, with its size:
// the stream's media clock and byte counters.
type Arrivals func(now time.Time, size int)

// ReadRTP is the one read loop of a track: it reads until the track ends,
// and for every packet notes its arrival, updates the track's reception
// statistics, sends the publisher a receiver report when one is due (so
// reports need no timer, and a track that stopped has nothing to report),
// then hands the packet to handle. The packet is valid until handle
// returns; handle may be nil for a track the gateway does not forward.
//
// With the SRTP fast path the packets come from the track's fast-path
// queue, which the socket reader fills and a goroutine of ReadRTP's
// reading pion's track feeds too (the packets before the fast path took
// the stream, and any it leaves to pion). While inline (nil: never) says
// so, the socket reader that decrypted a batch hands its packets over
// itself, on its own goroutine, instead of waking the track's reader:
// arrived and handle must then not block, as they delay every session's
// packets on the socket while they run. The calls are never concurrent.
func (s *Session) ReadRTP(track *webrtc.TrackRemote, stats *RTPStats, arrived Arrivals, handle func(pkt []byte, now time.Time), inline func() bool) {
	ssrc := uint32(track.SSRC())
	first, peeked := s.takePeeked(track)
	deliver := func(pkt []byte, now time.Time) {
		arrived(now, len(pkt))
		stats.Observe(pkt, now)
		if rep, ok := stats.Report(ssrc, now); ok {
			s.SendReport(rep)
		}
		if handle != nil {
			handle(pkt, now)
		}
	}
	if s.fast == nil {
		readPion(track, first, peeked, deliver)
		return
	}
	queue, video := fastQueueVideo, true
	if track.Kind() == webrtc.RTPCodecTypeAudio {
		queue, video = fastQueueAudio, false
	}
	var arrivals arrivalRecorder
	if s.twcc != nil {
		arrivals = s.twcc
	}
	ft := s.fast.openTrack(ssrc, queue, video, arrivals)
	defer s.fast.closeTrack(ft)
	var feeder sync.WaitGroup
	defer feeder.Wait()
	feeder.Go(func() {
		defer ft.close()
		// push refuses nothing but a closed track's packets, and only
		// this goroutine closes it: pion's Read ends with the session.
		readPion(track, first, peeked, func(pkt []byte, now time.Time) { ft.push(pkt, now) })
	})
	consume := func(p fastPacket) {
		if p.feedbackDue {
			s.twcc.send()
		}
		deliver(p.b, p.at)
		ft.recycle(p.b)
	}
	if inline != nil {
		ft.setConsumer(&trackConsumer{consume: consume, inline: inline})
		defer ft.clearConsumer()
	}
	ft.serve(consume)
}

// InlineAlways is ReadRTP's inline for a handler that never blocks.
func InlineAlways() bool { return true }

// readPion reads track through pion until it ends, first the packet
// bindStream peeked, if any.
func readPion(track *webrtc.TrackRemote, first peekedPacket, peeked bool, deliver func([]byte, time.Time)) {
	if peeked {
		deliver(first.b, first.at)
	}
	buf := make([]byte, maxPacket)
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			return
		}
		deliver(buf[:n], time.Now())
	}
}

// ReadRTCP reads a receiver's RTCP until it ends, so pion's interceptors
// run and its buffers never fill, and hands the track's Sender Reports to
// its reception statistics (for the reports' LSR/DLSR) and to onSR. rid
// names the simulcast layer whose RTCP is read ("" without simulcast: a
// simulcast receiver's RTCP is read per layer).
func ReadRTCP(recv *webrtc.RTPReceiver, rid string, ssrc uint32, stats *RTPStats, onSR func(*rtcp.SenderReport)) {
	buf := make([]byte, maxPacket)
	for {
		var n int
		var err error
		if rid != "" {
			n, _, err = recv.ReadSimulcast(buf, rid)
		} else {
			n, _, err = recv.Read(buf)
		}
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, p := range pkts {
			if sr, ok := p.(*rtcp.SenderReport); ok && (sr.SSRC == ssrc || ssrc == 0) {
				stats.OnSenderReport(sr.NTPTime, time.Now())
				if onSR != nil {
					onSR(sr)
				}
			}
		}
	}
}

// LayerRTCPReady takes the RTCP reader of simulcast layer rid of recv and
// returns the readers to start now: none until every layer the receiver
// was offered has its track, then all of them. pion's
// RTPReceiver.ReadSimulcast reads the receiver's layer list without its
// lock while a later layer's arrival writes it, so no layer's RTCP is read
// before the last layer arrived. A layer the publisher never sends leaves
// the others' RTCP unread (pion drops it once its buffer is full): the
// video then goes without Sender Reports, on arrival times.
func (s *Session) LayerRTCPReady(recv *webrtc.RTPReceiver, reader func()) []func() {
	s.layerMu.Lock()
	defer s.layerMu.Unlock()
	if s.layerRTCP == nil {
		s.layerRTCP = map[*webrtc.RTPReceiver][]func(){}
	}
	waiting := append(s.layerRTCP[recv], reader)
	if len(waiting) < len(recv.Tracks()) {
		s.layerRTCP[recv] = waiting
		return nil
	}
	delete(s.layerRTCP, recv)
	return waiting
}
