// Package rtpreorder puts the RTP packets of one SSRC back in sequence-number
// order.
//
// Packets from a WebRTC publisher arrive out of order, duplicated, or late
// (NACK retransmissions). A depacketizer needs them strictly in order and
// needs to know where packets were given up as lost, so that it can drop a
// damaged frame instead of emitting half of it. Buffer holds a window of
// packets in preallocated slots, waits a bounded time for a missing packet,
// and then skips it and says so.
//
// Slots are recycled last-in first-out and allocated on first use, so a
// buffer's memory is what it held at once at most (a few packets on a clean
// path), not its capacity. The per-packet path (Push then Pop until !ok)
// allocates only when more packets are held at once than ever before.
package rtpreorder

import (
	"errors"
	"fmt"
	"time"

	"github.com/pion/rtp"
)

// MaxPacketSize is the largest marshalled RTP packet a Buffer accepts. It
// matches an Ethernet MTU, which is more than WebRTC senders use and more
// than pion reads per packet by default.
const MaxPacketSize = 1500

// Capacity limits. A window wider than a quarter of the 16-bit sequence space
// would make "late" and "far ahead" ambiguous.
const (
	MinCapacity = 2
	MaxCapacity = 1 << 14
)

// Errors returned by Push, wrapped with details.
var (
	ErrPacketTooLarge = errors.New("rtpreorder: packet larger than MaxPacketSize")
	ErrMalformed      = errors.New("rtpreorder: malformed RTP packet")
)

// Stats counts what happened to the packets given to a Buffer.
type Stats struct {
	// Received counts well-formed packets given to Push, including the
	// duplicates and late ones.
	Received uint64
	// Duplicates counts packets whose sequence number was already buffered.
	Duplicates uint64
	// Late counts packets older than the last emitted one: arrived after
	// their slot was emitted or given up as lost (this includes duplicates
	// of packets already emitted).
	Late uint64
	// Lost counts sequence numbers never emitted: gaps skipped by Pop, plus
	// buffered packets discarded by a reset.
	Lost uint64
	// Malformed counts packets rejected by Push.
	Malformed uint64
	// Resets counts restarts caused by a sequence jump or an SSRC change.
	Resets uint64
}

// slot is one packet's memory. pkt aliases buf once filled.
type slot struct {
	buf     []byte
	pkt     rtp.Packet
	arrival time.Time
}

// Buffer is a reorder (jitter) buffer for the RTP packets of one SSRC.
//
// Use it from one goroutine: Push each packet as it is read, then call Pop
// until it returns ok=false. Packets are emitted in sequence-number order
// (with 16-bit wraparound). A missing packet is waited for up to maxDelay
// after the first packet behind it arrived; then it is skipped and the next
// packet is emitted with lost=true.
//
// A Buffer is not safe for concurrent use.
type Buffer struct {
	slots    []*slot // indexed by sequence number & mask; nil: not buffered
	spare    *slot   // Push parses here, then moves it into place
	free     []*slot // recycled slots, reused last in, first out
	emitted  *slot   // the slot Pop returned last, recycled by the next call
	mask     uint16
	capacity int
	maxDelay time.Duration

	started bool
	ssrc    uint32
	next    uint16 // sequence number of the next packet to emit
	end     uint16 // one past the highest buffered sequence number
	count   int    // packets currently buffered

	// hint caches the first buffered sequence number after a missing
	// head, so that Pop does not rescan the gap on every call while it
	// waits. While hintOK, it is the first buffered sequence number after
	// next: Push lowers it, and emitting it clears hintOK.
	hint   uint16
	hintOK bool

	// discontinuity makes the next emitted packet report lost=true
	// after a reset discarded packets or jumped the sequence.
	discontinuity bool

	stats Stats
}

// New returns a buffer holding up to capacity packets and waiting at most
// maxDelay for a missing packet before giving it up as lost. maxDelay should
// cover a NACK round trip; 0 means gaps are skipped as soon as a later packet
// is there.
//
// capacity is rounded up to a power of two and clamped to
// [MinCapacity, MaxCapacity]. Packet memory (MaxPacketSize bytes a slot) is
// allocated when a slot is first needed and then kept for reuse.
func New(capacity int, maxDelay time.Duration) *Buffer {
	capacity = roundCapacity(capacity)
	if maxDelay < 0 {
		maxDelay = 0
	}

	b := &Buffer{
		slots:    make([]*slot, capacity),
		free:     make([]*slot, 0, capacity+2),
		mask:     uint16(capacity - 1),
		capacity: capacity,
		maxDelay: maxDelay,
	}
	b.spare = newSlot()
	return b
}

// newSlot allocates one slot, with what pion's Unmarshal would otherwise
// allocate: up to 15 CSRCs and a few header extensions (abs-send-time,
// transport-cc, mid, rid, ...). A packet with more extensions grows the
// slice once; it is kept for reuse.
func newSlot() *slot {
	return &slot{
		buf: make([]byte, MaxPacketSize),
		pkt: rtp.Packet{Header: rtp.Header{
			CSRC:       make([]uint32, 0, 15),
			Extensions: make([]rtp.Extension, 0, 8),
		}},
	}
}

// takeSlot returns the most recently freed slot, or a new one.
func (b *Buffer) takeSlot() *slot {
	if n := len(b.free); n > 0 {
		s := b.free[n-1]
		b.free = b.free[:n-1]
		return s
	}
	return newSlot()
}

// recycle frees the slot Pop returned last: its packet is no longer valid.
func (b *Buffer) recycle() {
	if b.emitted != nil {
		b.free = append(b.free, b.emitted)
		b.emitted = nil
	}
}

func roundCapacity(c int) int {
	n := MinCapacity
	for n < c && n < MaxCapacity {
		n <<= 1
	}
	return n
}

// Capacity returns the number of packet slots (after rounding).
func (b *Buffer) Capacity() int {
	return b.capacity
}

// Push copies one marshalled RTP packet (as read from pion's TrackRemote.Read)
// into a preallocated slot; raw can be reused as soon as Push returns.
//
// A malformed packet returns an error and changes nothing but the Malformed
// count. Duplicates and packets older than what was already emitted are
// ignored and counted. A packet too far ahead to fit in the window or too
// far behind to be a late one, or one with a different SSRC, means the
// stream restarted: the buffer is reset and restarts from that packet, and
// the next Pop reports lost=true.
func (b *Buffer) Push(raw []byte, now time.Time) error {
	if len(raw) > MaxPacketSize {
		b.stats.Malformed++
		return fmt.Errorf("%w: %d bytes > %d", ErrPacketTooLarge, len(raw), MaxPacketSize)
	}
	b.recycle()

	s := b.spare
	n := copy(s.buf, raw)
	if err := s.pkt.Unmarshal(s.buf[:n]); err != nil {
		b.stats.Malformed++
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if s.pkt.Version != 2 {
		b.stats.Malformed++
		return fmt.Errorf("%w: version %d", ErrMalformed, s.pkt.Version)
	}
	b.stats.Received++

	seq := s.pkt.SequenceNumber
	switch {
	case !b.started:
		b.restart(now, false)
		return nil
	case s.pkt.SSRC != b.ssrc:
		b.restart(now, true)
		return nil
	}

	d := int16(seq - b.next)
	switch {
	case d < 0 && -int(d) <= b.capacity:
		b.stats.Late++
		return nil
	case d < 0 || int(d) >= b.capacity:
		b.restart(now, true)
		return nil
	}

	idx := seq & b.mask
	if b.slots[idx] != nil {
		b.stats.Duplicates++
		return nil
	}
	b.store(idx, now)

	if int16(seq+1-b.end) > 0 {
		b.end = seq + 1
	}
	if d > 0 && b.hintOK && int16(seq-b.hint) < 0 {
		b.hint = seq
	}
	return nil
}

// store moves the freshly parsed spare slot into position idx, which is
// empty, and takes a new spare.
func (b *Buffer) store(idx uint16, now time.Time) {
	s := b.spare
	s.arrival = now
	b.slots[idx] = s
	b.spare = b.takeSlot()
	b.count++
}

// restart empties the buffer and starts over from the packet in the spare
// slot. discontinuity says whether the stream was already running, in which
// case whatever was buffered is lost and the next packet reports it.
func (b *Buffer) restart(now time.Time, discontinuity bool) {
	if discontinuity {
		b.stats.Resets++
		b.stats.Lost += uint64(b.count)
	}
	b.clear()
	b.started = true
	b.discontinuity = discontinuity
	b.ssrc = b.spare.pkt.SSRC
	seq := b.spare.pkt.SequenceNumber
	b.next = seq
	b.end = seq + 1
	b.store(seq&b.mask, now)
}

func (b *Buffer) clear() {
	if b.count > 0 {
		for i, s := range b.slots {
			if s != nil {
				b.free = append(b.free, s)
				b.slots[i] = nil
			}
		}
	}
	b.count = 0
	b.hintOK = false
}

// Pop returns the next packet in sequence order when it is there. When the
// next packet is missing and the first packet after the gap has waited at
// least maxDelay, or the window is full, it skips the gap and returns that
// packet with lost=true. ok is false when nothing can be emitted yet.
//
// The packet (and its Payload) is valid until the next call to Push or Pop.
func (b *Buffer) Pop(now time.Time) (pkt *rtp.Packet, lost bool, ok bool) {
	b.recycle()
	if b.count == 0 {
		return nil, false, false
	}

	s := b.slots[b.next&b.mask]
	if s == nil {
		seq := b.firstAfterGap()
		s = b.slots[seq&b.mask]
		full := uint16(b.end-b.next) >= uint16(b.capacity)
		if !full && now.Sub(s.arrival) < b.maxDelay {
			return nil, false, false
		}
		b.stats.Lost += uint64(uint16(seq - b.next))
		b.next = seq
		lost = true
	}

	if b.hintOK && b.hint == b.next {
		b.hintOK = false
	}
	b.slots[b.next&b.mask] = nil
	b.emitted = s
	b.count--
	b.next++
	if b.discontinuity {
		b.discontinuity = false
		lost = true
	}
	return &s.pkt, lost, true
}

// firstAfterGap returns the first buffered sequence number after the
// missing head. It must only be called when count > 0 and the head is
// missing, so the scan always terminates within the window.
func (b *Buffer) firstAfterGap() uint16 {
	if b.hintOK {
		return b.hint
	}
	seq := b.next + 1
	for b.slots[seq&b.mask] == nil {
		seq++
	}
	b.hint, b.hintOK = seq, true
	return seq
}

// Len returns the number of packets currently buffered.
func (b *Buffer) Len() int {
	return b.count
}

// Stats returns the counters accumulated since New.
func (b *Buffer) Stats() Stats {
	return b.stats
}

// Reset drops all buffered packets and forgets the stream position: the
// next pushed packet starts a new sequence, as after New. Counters are kept;
// dropped packets are not counted as lost.
func (b *Buffer) Reset() {
	b.recycle()
	b.clear()
	b.started = false
	b.discontinuity = false
}
