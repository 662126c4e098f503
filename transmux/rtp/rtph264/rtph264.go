// Package rtph264 turns H.264 RTP packets (RFC 6184) into access units.
//
// It is fed packets in sequence order, for example by rtpreorder, together
// with the information that packets were lost before one of them. Its rule is
// that a damaged access unit is dropped whole: an RTMP viewer recovers from a
// missing frame at the next keyframe, but a half frame smears garbage over
// every frame that references it.
//
// Single NAL unit packets, STAP-A and FU-A are supported, which covers
// packetization-mode 0 and 1 as used by browsers and OBS. Interleaved mode
// (STAP-B, MTAP, FU-B) is rejected.
//
// Steady state does not allocate: access units are assembled in two
// buffers that grow to the largest frame seen and are then reused, or,
// with Depacketizer.Buffers, keep aubuf.Keep bytes and borrow a shared
// buffer for larger ones (keyframes).
package rtph264

import (
	"errors"
	"fmt"

	"github.com/pion/rtp"

	"github.com/castbridge/castbridge/transmux/rtp/aubuf"
)

// Limits that bound memory per track. An access unit exceeding either is
// dropped with ErrAccessUnitTooLarge.
const (
	// MaxAccessUnitSize is the largest access unit, in bytes of NAL units
	// without start codes. 4 MiB is far beyond a 1080p keyframe at any
	// bitrate a WebRTC publisher sends.
	MaxAccessUnitSize = 4 << 20
	// MaxNALUsPerAccessUnit is the largest number of NAL units in one
	// access unit. Encoders that cap slice size to fit one packet produce
	// a few hundred slices per keyframe; this leaves ample room.
	MaxNALUsPerAccessUnit = 4096
)

// NAL unit types used here (ITU-T H.264 table 7-1, RFC 6184 table 3).
const (
	naluNonIDR = 1
	naluIDR    = 5
	naluSPS    = 7
	naluPPS    = 8
	naluAUD    = 9
	naluSTAPA  = 24
	naluSTAPB  = 25
	naluMTAP16 = 26
	naluMTAP24 = 27
	naluFUA    = 28
	naluFUB    = 29
)

// Errors returned by Push, wrapped with details. The access unit the packet
// belonged to is dropped; depacketizing resumes with the next one.
var (
	ErrMalformed          = errors.New("rtph264: malformed packet")
	ErrUnsupported        = errors.New("rtph264: unsupported packet type")
	ErrAccessUnitTooLarge = errors.New("rtph264: access unit too large")
	ErrNilPacket          = errors.New("rtph264: nil packet")
)

// AccessUnit is one decoded picture's worth of NAL units.
type AccessUnit struct {
	// Timestamp is the RTP timestamp (90 kHz clock).
	Timestamp uint32
	// NALUs are the NAL units without start codes, in order; SPS, PPS,
	// SEI and AUD are included as they came. Never empty, nor is any NAL
	// unit in it.
	NALUs [][]byte
	// IDR reports whether the access unit contains a NAL unit of type 5.
	IDR bool
	// SPS and PPS are the first SPS and PPS of the access unit, nil when it
	// carried none. They alias NALUs.
	SPS, PPS []byte
}

// Stats counts access units emitted and dropped.
type Stats struct {
	// AccessUnits counts access units returned by Push.
	AccessUnits uint64
	// DroppedIncomplete counts access units dropped because some of their
	// packets were lost.
	DroppedIncomplete uint64
	// DroppedMalformed counts access units dropped because a packet was
	// malformed or unsupported, or the access unit exceeded the limits.
	DroppedMalformed uint64
}

// dropReason says why the access unit in progress will be dropped.
type dropReason uint8

const (
	keep dropReason = iota
	incomplete
	malformed
)

// assembly holds one access unit being built. NAL unit i is
// buf[bounds[i]:bounds[i+1]]; offsets instead of slices keep the NAL units
// valid when buf grows and moves.
type assembly struct {
	buf    aubuf.Buf
	pool   *aubuf.Pool // what buf borrows from, nil for none
	bounds []int
	nalus  [][]byte
	idr    bool
	sps    int // index of the first SPS, -1 if none
	pps    int
}

func (a *assembly) reset() {
	a.buf.Reset(a.pool)
	a.bounds = append(a.bounds[:0], 0)
	a.idr = false
	a.sps, a.pps = -1, -1
}

func (a *assembly) numNALUs() int {
	return len(a.bounds) - 1
}

// Depacketizer reassembles H.264 access units from RTP packets of one
// stream. The zero value is ready to use. It is not safe for concurrent use.
type Depacketizer struct {
	// Buffers, when set before the first Push, lends the buffers for
	// access units larger than aubuf.Keep, so that a track does not keep
	// a keyframe's memory between keyframes. Nil: each of the two buffers
	// keeps what it grew to.
	Buffers *aubuf.Pool

	// Double buffered: a returned access unit stays valid while the next
	// one is started in the same Push (a timestamp change without a marker
	// bit). An access unit ended by its marker bit is returned from the
	// buffer it was built in, which the next access unit reuses, so with
	// senders that set the marker (WebRTC does) only one buffer grows to
	// keyframe size.
	au  [2]assembly
	cur int

	active bool   // an access unit is in progress
	ts     uint32 // its RTP timestamp
	drop   dropReason
	fuOpen bool // the last NAL unit of au[cur] is an FU-A still being assembled
	ended  bool // the marker bit was seen; the next Push returns it

	seq       uint16
	seqKnown  bool
	gapCarry  bool // a loss seen on a packet without payload, for the next one
	initiated bool

	stats Stats
}

// Push consumes the next packet in sequence order.
//
// lost=true means packets before this one were lost: the access unit in
// progress is discarded, and so is the one this packet belongs to unless the
// packet evidently starts it (see below). A gap in sequence numbers is
// treated the same way, so every packet of the stream must be pushed,
// including padding-only packets, which are otherwise ignored.
//
// Push returns a complete access unit when one finished: the packet had the
// marker bit set, or it has a new RTP timestamp, in which case the finished
// one is the previous timestamp's. Its NALUs alias an internal buffer valid
// until the next Push.
//
// A non-nil error reports that this packet was rejected and its access unit
// will be dropped; it is independent of ok, since a packet with a new
// timestamp can complete the previous access unit and be malformed itself.
//
// After a loss, a packet is taken as the start of an access unit, and kept,
// when its first NAL unit is an access unit delimiter, an SPS, or the first
// slice of a picture (first_mb_in_slice = 0). Arbitrary slice order, which
// would defeat the last rule, is not allowed in the constrained baseline
// profile WebRTC uses.
func (d *Depacketizer) Push(pkt *rtp.Packet, lost bool) (au AccessUnit, ok bool, err error) {
	if pkt == nil {
		return AccessUnit{}, false, ErrNilPacket
	}
	if !d.initiated {
		d.au[0].pool, d.au[1].pool = d.Buffers, d.Buffers
		d.au[0].reset()
		d.au[1].reset()
		d.initiated = true
	}

	gap := lost || d.gapCarry || (d.seqKnown && pkt.SequenceNumber != d.seq+1)
	d.seq, d.seqKnown, d.gapCarry = pkt.SequenceNumber, true, false

	if d.active && d.ended {
		// Its marker packet came while another access unit was being
		// returned; its turn is now.
		au, ok = d.finish(true)
	}

	payload := pkt.Payload
	if len(payload) == 0 {
		// Padding only (bandwidth probing). It carries no media and its
		// timestamp is not a frame's; remember a loss for the next packet.
		d.gapCarry = gap
		return au, ok, nil
	}

	if d.active && pkt.Timestamp != d.ts {
		// The previous access unit ended without a marker bit we saw:
		// either it was lost, or the sender omits it.
		switch {
		case gap:
			d.markDrop(incomplete)
		case d.fuOpen && d.drop == keep:
			d.markDrop(malformed)
			err = fmt.Errorf("%w: FU-A without end fragment before timestamp change", ErrMalformed)
		}
		au, ok = d.finish(true)
	}

	if !d.active {
		d.active = true
		d.ts = pkt.Timestamp
		d.au[d.cur].reset() // it may still hold the access unit returned last
		if gap && !startsAccessUnit(payload) {
			d.drop = incomplete
		}
	} else if gap {
		d.markDrop(incomplete)
	}

	if d.drop == keep {
		if perr := d.consume(payload); perr != nil {
			d.markDrop(malformed)
			if err == nil {
				err = perr
			}
		}
	}

	if pkt.Marker {
		if d.fuOpen && d.drop == keep {
			d.markDrop(malformed)
			if err == nil {
				err = fmt.Errorf("%w: marker bit on FU-A without end bit", ErrMalformed)
			}
		}
		if ok {
			// The previous access unit (ended without a marker) is
			// returned by this Push already; this one-packet access
			// unit is complete too and goes out with the next Push.
			d.ended = true
		} else {
			au, ok = d.finish(false)
		}
	}
	return au, ok, err
}

func (d *Depacketizer) markDrop(r dropReason) {
	if d.drop == keep {
		d.drop = r
	}
}

// finish closes the access unit in progress and returns it unless it is to
// be dropped. more says whether this Push goes on to start another access
// unit, which then must not overwrite the one returned.
func (d *Depacketizer) finish(more bool) (AccessUnit, bool) {
	a := &d.au[d.cur]
	drop := d.drop
	if d.fuOpen && drop == keep {
		drop = incomplete
	}
	d.active, d.drop, d.fuOpen, d.ended = false, keep, false, false

	if drop == keep && a.numNALUs() == 0 {
		a.reset()
		return AccessUnit{}, false
	}
	switch drop {
	case incomplete:
		d.stats.DroppedIncomplete++
		a.reset()
		return AccessUnit{}, false
	case malformed:
		d.stats.DroppedMalformed++
		a.reset()
		return AccessUnit{}, false
	}

	a.nalus = a.nalus[:0]
	for i := 0; i < a.numNALUs(); i++ {
		a.nalus = append(a.nalus, a.buf.B[a.bounds[i]:a.bounds[i+1]:a.bounds[i+1]])
	}
	au := AccessUnit{Timestamp: d.ts, NALUs: a.nalus, IDR: a.idr}
	if a.sps >= 0 {
		au.SPS = a.nalus[a.sps]
	}
	if a.pps >= 0 {
		au.PPS = a.nalus[a.pps]
	}
	d.stats.AccessUnits++

	if more {
		d.cur ^= 1
		d.au[d.cur].reset()
	}
	return au, true
}

// consume appends the NAL units of one RTP payload to the access unit in
// progress.
func (d *Depacketizer) consume(payload []byte) error {
	a := &d.au[d.cur]
	typ := payload[0] & 0x1F

	if d.fuOpen && typ != naluFUA {
		return fmt.Errorf("%w: NAL unit type %d while an FU-A is open", ErrMalformed, typ)
	}

	switch {
	case typ == naluSTAPA:
		return d.consumeSTAPA(a, payload[1:])
	case typ == naluFUA:
		return d.consumeFUA(a, payload)
	case typ == naluSTAPB || typ == naluMTAP16 || typ == naluMTAP24 || typ == naluFUB:
		return fmt.Errorf("%w: %d (interleaved mode)", ErrUnsupported, typ)
	default:
		if err := checkNALHeader(payload[0]); err != nil {
			return err
		}
		if err := d.openNALU(a, payload[0]); err != nil {
			return err
		}
		if err := d.appendBytes(a, payload[1:]); err != nil {
			return err
		}
		d.closeNALU(a)
		return nil
	}
}

func (d *Depacketizer) consumeSTAPA(a *assembly, p []byte) error {
	if len(p) == 0 {
		return fmt.Errorf("%w: empty STAP-A", ErrMalformed)
	}
	for len(p) > 0 {
		if len(p) < 3 {
			return fmt.Errorf("%w: STAP-A has %d trailing bytes", ErrMalformed, len(p))
		}
		size := int(p[0])<<8 | int(p[1])
		p = p[2:]
		if size == 0 || size > len(p) {
			return fmt.Errorf("%w: STAP-A NAL unit size %d, %d bytes left", ErrMalformed, size, len(p))
		}
		if err := checkNALHeader(p[0]); err != nil {
			return fmt.Errorf("in STAP-A: %w", err)
		}
		if err := d.openNALU(a, p[0]); err != nil {
			return err
		}
		if err := d.appendBytes(a, p[1:size]); err != nil {
			return err
		}
		d.closeNALU(a)
		p = p[size:]
	}
	return nil
}

func (d *Depacketizer) consumeFUA(a *assembly, p []byte) error {
	if len(p) < 2 {
		return fmt.Errorf("%w: FU-A of %d bytes", ErrMalformed, len(p))
	}
	indicator, header := p[0], p[1]
	start, end := header&0x80 != 0, header&0x40 != 0
	hdr := indicator&0xE0 | header&0x1F
	if start && end {
		return fmt.Errorf("%w: FU-A with both start and end bits", ErrMalformed)
	}

	switch {
	case start:
		if d.fuOpen {
			return fmt.Errorf("%w: FU-A start while another FU-A is open", ErrMalformed)
		}
		if err := checkNALHeader(hdr); err != nil {
			return fmt.Errorf("in FU-A: %w", err)
		}
		if err := d.openNALU(a, hdr); err != nil {
			return err
		}
		d.fuOpen = true
	case !d.fuOpen:
		return fmt.Errorf("%w: FU-A fragment without start", ErrMalformed)
	}

	if err := d.appendBytes(a, p[2:]); err != nil {
		return err
	}
	if end {
		d.fuOpen = false
		d.closeNALU(a)
	}
	return nil
}

// openNALU starts a new NAL unit with its header byte.
func (d *Depacketizer) openNALU(a *assembly, header byte) error {
	if a.numNALUs() >= MaxNALUsPerAccessUnit {
		return fmt.Errorf("%w: more than %d NAL units", ErrAccessUnitTooLarge, MaxNALUsPerAccessUnit)
	}
	if len(a.buf.B)+1 > MaxAccessUnitSize {
		return fmt.Errorf("%w: more than %d bytes", ErrAccessUnitTooLarge, MaxAccessUnitSize)
	}
	a.buf.AppendByte(a.pool, header)
	return nil
}

func (d *Depacketizer) appendBytes(a *assembly, b []byte) error {
	if len(a.buf.B)+len(b) > MaxAccessUnitSize {
		return fmt.Errorf("%w: more than %d bytes", ErrAccessUnitTooLarge, MaxAccessUnitSize)
	}
	a.buf.Append(a.pool, b)
	return nil
}

// closeNALU ends the NAL unit that runs to the end of a.buf.B and records
// what the access unit needs to report about it.
func (d *Depacketizer) closeNALU(a *assembly) {
	i := a.numNALUs()
	start := a.bounds[i]
	a.bounds = append(a.bounds, len(a.buf.B))
	switch a.buf.B[start] & 0x1F {
	case naluIDR:
		a.idr = true
	case naluSPS:
		if a.sps < 0 {
			a.sps = i
		}
	case naluPPS:
		if a.pps < 0 {
			a.pps = i
		}
	}
}

// checkNALHeader rejects NAL unit headers that cannot appear in an access
// unit: forbidden_zero_bit set (RFC 6184 section 5.3: the NAL unit may
// contain bit errors), type 0 or 30-31 (unspecified), or packet types.
func checkNALHeader(h byte) error {
	if h&0x80 != 0 {
		return fmt.Errorf("%w: forbidden_zero_bit set", ErrMalformed)
	}
	if t := h & 0x1F; t == 0 || t > 23 {
		return fmt.Errorf("%w: NAL unit type %d", ErrMalformed, t)
	}
	return nil
}

// startsAccessUnit reports whether an RTP payload evidently begins an
// access unit, so that nothing of it can have been lost before it.
func startsAccessUnit(p []byte) bool {
	var typ byte
	var next []byte // NAL unit bytes after the header
	switch p[0] & 0x1F {
	case naluSTAPA:
		if len(p) < 4 {
			return false
		}
		typ, next = p[3]&0x1F, p[4:]
	case naluFUA:
		if len(p) < 2 || p[1]&0x80 == 0 {
			return false
		}
		typ, next = p[1]&0x1F, p[2:]
	default:
		typ, next = p[0]&0x1F, p[1:]
	}
	switch typ {
	case naluAUD, naluSPS:
		return true
	case naluNonIDR, naluIDR:
		// first_mb_in_slice is ue(v); a leading 1 bit encodes 0.
		return len(next) > 0 && next[0]&0x80 != 0
	}
	return false
}

// Stats returns the counters accumulated since the zero value.
func (d *Depacketizer) Stats() Stats {
	return d.stats
}

// Reset discards the access unit in progress and forgets the sequence
// position, as after a stream restart. Counters are kept.
func (d *Depacketizer) Reset() {
	if d.initiated {
		d.au[d.cur].reset()
	}
	d.active, d.drop, d.fuOpen, d.ended = false, keep, false, false
	d.seqKnown, d.gapCarry = false, false
}
