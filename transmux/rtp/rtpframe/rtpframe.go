// Package rtpframe turns VP9 (RFC 9628), AV1 (the AOM "RTP Payload Format
// for AV1") and H.265 (RFC 7798) RTP packets into frames, with rtph264's
// rules: packets come in sequence order with a flag for loss before them,
// and a damaged frame is dropped whole (later frames reference it; the
// caller asks for a keyframe).
//
// A frame ends at the marker bit (or, when a sender omits it, at a new
// timestamp). After a loss, a frame is kept only when its first packet
// evidently starts it: VP9's B bit, an AV1 packet not continuing an OBU, an
// H.265 access unit delimiter, parameter set, prefix SEI or first slice.
//
// Steady state does not allocate: frames are assembled in two buffers that
// grow to the largest frame seen and are then reused.
package rtpframe

import (
	"errors"
	"fmt"

	"github.com/pion/rtp"

	"github.com/castbridge/castbridge/transmux/rtp/aubuf"
)

// Limits that bound memory per track; a frame exceeding one is dropped
// with ErrFrameTooLarge.
const (
	MaxFrameSize     = 4 << 20
	MaxUnitsPerFrame = 4096
)

// Errors returned by Push, wrapped with details. The frame the packet
// belonged to is dropped.
var (
	ErrMalformed     = errors.New("rtpframe: malformed packet")
	ErrUnsupported   = errors.New("rtpframe: unsupported packet type")
	ErrFrameTooLarge = errors.New("rtpframe: frame too large")
	ErrNilPacket     = errors.New("rtpframe: nil packet")
)

// Codec is a payload format this package reads.
type Codec uint8

// The codecs.
const (
	VP9 Codec = iota + 1
	AV1
	H265
)

func (c Codec) String() string {
	switch c {
	case VP9:
		return "VP9"
	case AV1:
		return "AV1"
	case H265:
		return "H265"
	}
	return fmt.Sprintf("Codec(%d)", uint8(c))
}

// Frame is one picture's data.
type Frame struct {
	Timestamp uint32 // RTP timestamp, 90 kHz
	// Units are the frame's parts: VP9, one frame (of the base spatial
	// layer); AV1, the temporal unit's OBUs as RTP carries them (no
	// obu_size); H.265, its NAL units without start codes. Never empty.
	Units [][]byte
	// Keyframe: a VP9 key frame, an AV1 temporal unit holding a sequence
	// header (what encoders send with every key frame), an H.265 access
	// unit holding an IRAP picture.
	Keyframe bool
}

type assembly struct {
	buf    aubuf.Buf
	pool   *aubuf.Pool // what buf borrows from, nil for none
	bounds []int
	units  [][]byte
}

func (a *assembly) reset() {
	a.buf.Reset(a.pool)
	a.bounds = append(a.bounds[:0], 0)
}

func (a *assembly) n() int { return len(a.bounds) - 1 }

// begin starts a new unit with the given bytes.
func (a *assembly) begin(p ...[]byte) error {
	if a.n() >= MaxUnitsPerFrame {
		return fmt.Errorf("more than %d units: %w", MaxUnitsPerFrame, ErrFrameTooLarge)
	}
	for _, b := range p {
		if err := a.add(b); err != nil {
			return err
		}
	}
	a.bounds = append(a.bounds, len(a.buf.B))
	return nil
}

// extend appends to the last unit.
func (a *assembly) extend(b []byte) error {
	if a.n() == 0 {
		return fmt.Errorf("continuation without a unit: %w", ErrMalformed)
	}
	if err := a.add(b); err != nil {
		return err
	}
	a.bounds[len(a.bounds)-1] = len(a.buf.B)
	return nil
}

func (a *assembly) add(b []byte) error {
	if len(a.buf.B)+len(b) > MaxFrameSize {
		return fmt.Errorf("over %d bytes: %w", MaxFrameSize, ErrFrameTooLarge)
	}
	a.buf.Append(a.pool, b)
	return nil
}

func (a *assembly) frame() [][]byte {
	a.units = a.units[:0]
	for i := 0; i < a.n(); i++ {
		a.units = append(a.units, a.buf.B[a.bounds[i]:a.bounds[i+1]:a.bounds[i+1]])
	}
	return a.units
}

// Depacketizer reassembles one stream's frames. Make it with New. It is
// not safe for concurrent use.
type Depacketizer struct {
	codec Codec
	asm   [2]assembly
	cur   int

	active   bool // a frame is in progress
	ts       uint32
	broken   bool // the frame in progress is dropped
	fragOpen bool // its last unit is a fragment still open (FU, AV1 Y)
	started  bool // VP9: the base layer frame has begun (B seen)
	ended    bool // VP9: the base layer frame has ended (E seen)

	seq      uint16
	seqKnown bool
	gapCarry bool
}

// New returns a depacketizer for codec; buffers (nil for none) lends the
// buffers for frames larger than aubuf.Keep (keyframes), so that a track
// does not keep a keyframe's memory between keyframes.
func New(codec Codec, buffers *aubuf.Pool) *Depacketizer {
	d := &Depacketizer{codec: codec}
	d.asm[0].pool, d.asm[1].pool = buffers, buffers
	d.asm[0].reset()
	d.asm[1].reset()
	return d
}

// Codec is the codec the depacketizer reads.
func (d *Depacketizer) Codec() Codec { return d.codec }

// Reset forgets the frame in progress and the sequence position (a new
// source follows).
func (d *Depacketizer) Reset() {
	d.active, d.broken, d.fragOpen, d.seqKnown, d.gapCarry = false, false, false, false, false
	d.asm[d.cur].reset()
}

// Push consumes the next packet in sequence order (lost: packets before it
// were lost). It returns a finished frame when this packet ended one (its
// marker bit) or started the next (a new timestamp); the frame's units
// alias an internal buffer valid until the next Push. A non-nil error says
// this packet was rejected and its frame will be dropped.
func (d *Depacketizer) Push(pkt *rtp.Packet, lost bool) (f Frame, ok bool, err error) {
	if pkt == nil {
		return Frame{}, false, ErrNilPacket
	}
	gap := lost || d.gapCarry || (d.seqKnown && pkt.SequenceNumber != d.seq+1)
	d.seq, d.seqKnown, d.gapCarry = pkt.SequenceNumber, true, false
	if len(pkt.Payload) == 0 {
		d.gapCarry = gap // padding: carries nothing, not even a timestamp
		return Frame{}, false, nil
	}
	if d.active && pkt.Timestamp != d.ts {
		// The frame ended without a marker bit we saw.
		if !gap {
			f, ok = d.finish()
		}
		d.active = false
		if ok {
			d.cur ^= 1
		}
	}
	if d.active && gap {
		d.broken = true
	}
	if !d.active {
		d.active, d.ts, d.fragOpen, d.started, d.ended = true, pkt.Timestamp, false, false, false
		d.asm[d.cur].reset()
		d.broken = gap && !d.startsFrame(pkt.Payload)
	}
	if !d.broken {
		if perr := d.parse(pkt.Payload); perr != nil {
			d.broken = true
			err = perr
		}
	}
	if pkt.Marker {
		if ok {
			// A marker on the first packet of a one-packet frame that also
			// ended the previous one: the previous is returned now, this
			// one is lost to the double buffer (never seen with real
			// senders, which set the marker on every frame).
			d.broken = true
		}
		if !ok {
			f, ok = d.finish()
		}
		d.active = false
	}
	return f, ok, err
}

// finish returns the frame in progress if it is whole.
func (d *Depacketizer) finish() (Frame, bool) {
	a := &d.asm[d.cur]
	if d.broken || d.fragOpen || a.n() == 0 || (d.codec == VP9 && !d.ended) {
		return Frame{}, false
	}
	units := a.frame()
	return Frame{Timestamp: d.ts, Units: units, Keyframe: keyframe(d.codec, units)}, true
}

func (d *Depacketizer) startsFrame(p []byte) bool {
	switch d.codec {
	case VP9:
		return p[0]&0x08 != 0 // B
	case AV1:
		return p[0]&0x80 == 0 // Z clear: no OBU continued from before
	case H265:
		if len(p) < 3 {
			return false
		}
		typ := p[0] >> 1 & 0x3f
		switch {
		case typ == 49: // FU: the start of a first slice
			return p[2]&0x80 != 0 && len(p) > 3 && p[2]&0x3f < 32 && p[3]&0x80 != 0
		case typ == 48: // AP: its first NAL unit
			if len(p) < 7 {
				return false
			}
			return h265Starts(p[4:])
		}
		return h265Starts(p)
	}
	return false
}

// h265Starts tells whether a NAL unit can only begin an access unit.
func h265Starts(n []byte) bool {
	if len(n) < 3 {
		return false
	}
	typ := n[0] >> 1 & 0x3f
	return typ >= 32 && typ <= 35 || typ == 39 || typ < 32 && n[2]&0x80 != 0
}

func (d *Depacketizer) parse(p []byte) error {
	switch d.codec {
	case VP9:
		return d.parseVP9(p)
	case AV1:
		return d.parseAV1(p)
	case H265:
		return d.parseH265(p)
	}
	return fmt.Errorf("codec %v: %w", d.codec, ErrUnsupported)
}

// parseVP9 reads the payload descriptor (RFC 9628 4.2) and keeps the base
// spatial layer's frame.
func (d *Depacketizer) parseVP9(p []byte) error {
	payload, b, e, sid, err := vp9Descriptor(p)
	if err != nil {
		return err
	}
	if sid != 0 {
		return nil // only the base spatial layer is forwarded
	}
	switch {
	case b && len(payload) == 0:
		return fmt.Errorf("vp9: a frame start without data: %w", ErrMalformed)
	case b:
		if d.started {
			return fmt.Errorf("vp9: a second frame start in one picture's base layer: %w", ErrMalformed)
		}
		d.started = true
		if err := d.asm[d.cur].begin(payload); err != nil {
			return err
		}
	case !d.started:
		return fmt.Errorf("vp9: frame data before its start: %w", ErrMalformed)
	case d.ended:
		return fmt.Errorf("vp9: frame data after its end: %w", ErrMalformed)
	default:
		if err := d.asm[d.cur].extend(payload); err != nil {
			return err
		}
	}
	if e {
		d.ended = true
	}
	return nil
}

// vp9Descriptor reads a VP9 payload descriptor (RFC 9628 4.2): the frame
// data after it, the begin and end of frame bits and the spatial layer.
func vp9Descriptor(p []byte) (payload []byte, b, e bool, sid int, err error) {
	if len(p) == 0 {
		return nil, false, false, 0, fmt.Errorf("vp9 descriptor missing: %w", ErrMalformed)
	}
	h := p[0]
	i, l, f, b, e, v := h&0x80 != 0, h&0x20 != 0, h&0x10 != 0, h&0x08 != 0, h&0x04 != 0, h&0x02 != 0
	pbit := h&0x40 != 0
	pos := 1
	need := func(n int) error {
		if len(p) < pos+n {
			return fmt.Errorf("vp9 descriptor truncated: %w", ErrMalformed)
		}
		return nil
	}
	if i {
		if err := need(1); err != nil {
			return nil, false, false, 0, err
		}
		if p[pos]&0x80 != 0 {
			pos += 2
		} else {
			pos++
		}
	}
	if l {
		if err := need(1); err != nil {
			return nil, false, false, 0, err
		}
		sid = int(p[pos] >> 1 & 0x07)
		pos++
		if !f {
			pos++ // TL0PICIDX
		}
	}
	if pbit && f {
		for k := 0; ; k++ {
			if err := need(1); err != nil {
				return nil, false, false, 0, err
			}
			if k == 3 {
				return nil, false, false, 0, fmt.Errorf("vp9 descriptor: more than 3 P_DIFF: %w", ErrMalformed)
			}
			more := p[pos]&0x01 != 0
			pos++
			if !more {
				break
			}
		}
	}
	if v {
		if err := need(1); err != nil {
			return nil, false, false, 0, err
		}
		ss := p[pos]
		pos++
		ns := int(ss>>5) + 1
		if ss&0x10 != 0 { // Y: resolutions
			pos += 4 * ns
		}
		if ss&0x08 != 0 { // G: picture group
			if err := need(1); err != nil {
				return nil, false, false, 0, err
			}
			ng := int(p[pos])
			pos++
			for k := 0; k < ng; k++ {
				if err := need(1); err != nil {
					return nil, false, false, 0, err
				}
				r := int(p[pos] >> 2 & 0x03)
				pos += 1 + r
			}
		}
	}
	if err := need(0); err != nil {
		return nil, false, false, 0, err
	}
	return p[pos:], b, e, sid, nil
}

// parseAV1 reads the aggregation header and OBU elements (AV1 RTP 4.4).
func (d *Depacketizer) parseAV1(p []byte) error {
	z, y, w := p[0]&0x80 != 0, p[0]&0x40 != 0, int(p[0]>>4&0x03)
	p = p[1:]
	a := &d.asm[d.cur]
	for k := 0; len(p) > 0; k++ {
		var elem []byte
		if w == 0 || k < w-1 {
			size, n, ok := leb128(p)
			if !ok || size > uint64(len(p)-n) {
				return fmt.Errorf("av1 OBU element length: %w", ErrMalformed)
			}
			elem, p = p[n:n+int(size)], p[n+int(size):]
		} else {
			elem, p = p, nil
		}
		if k == 0 && z {
			if !d.fragOpen {
				return fmt.Errorf("av1: continuation of no OBU: %w", ErrMalformed)
			}
			if err := a.extend(elem); err != nil {
				return err
			}
		} else {
			if d.fragOpen {
				return fmt.Errorf("av1: an OBU fragment left unfinished: %w", ErrMalformed)
			}
			if len(elem) == 0 {
				return fmt.Errorf("av1: empty OBU element: %w", ErrMalformed)
			}
			if err := a.begin(elem); err != nil {
				return err
			}
		}
		d.fragOpen = false
		if w != 0 && k == w-1 && len(p) > 0 {
			return fmt.Errorf("av1: more than W=%d elements: %w", w, ErrMalformed)
		}
	}
	d.fragOpen = y
	return nil
}

func leb128(b []byte) (v uint64, n int, ok bool) {
	for i := 0; i < 8 && i < len(b); i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1, v <= MaxFrameSize
		}
	}
	return 0, 0, false
}

// parseH265 reads single NAL unit packets, aggregation packets and
// fragmentation units (RFC 7798 4.4; no DONL: sprop-max-don-diff 0).
func (d *Depacketizer) parseH265(p []byte) error {
	if len(p) < 3 || p[0]&0x80 != 0 {
		return fmt.Errorf("h265 payload header: %w", ErrMalformed)
	}
	a := &d.asm[d.cur]
	switch typ := p[0] >> 1 & 0x3f; typ {
	case 48: // AP
		if d.fragOpen {
			return fmt.Errorf("h265: FU left unfinished: %w", ErrMalformed)
		}
		q := p[2:]
		for len(q) > 0 {
			if len(q) < 2 {
				return fmt.Errorf("h265 AP truncated: %w", ErrMalformed)
			}
			n := int(q[0])<<8 | int(q[1])
			if n < 2 || n > len(q)-2 {
				return fmt.Errorf("h265 AP NAL unit size %d: %w", n, ErrMalformed)
			}
			if err := a.begin(q[2 : 2+n]); err != nil {
				return err
			}
			q = q[2+n:]
		}
	case 49: // FU
		fu := p[2]
		s, e, ft := fu&0x80 != 0, fu&0x40 != 0, fu&0x3f
		data := p[3:]
		switch {
		case s && e:
			return fmt.Errorf("h265 FU with start and end: %w", ErrMalformed)
		case s:
			if d.fragOpen {
				return fmt.Errorf("h265: FU left unfinished: %w", ErrMalformed)
			}
			hdr := [2]byte{p[0]&0x81 | ft<<1, p[1]}
			if err := a.begin(hdr[:], data); err != nil {
				return err
			}
			d.fragOpen = true
		case !d.fragOpen:
			return fmt.Errorf("h265 FU continues nothing: %w", ErrMalformed)
		default:
			if err := a.extend(data); err != nil {
				return err
			}
			d.fragOpen = !e
		}
	case 50:
		return fmt.Errorf("h265 PACI packets: %w", ErrUnsupported)
	default:
		if d.fragOpen {
			return fmt.Errorf("h265: FU left unfinished: %w", ErrMalformed)
		}
		return a.begin(p)
	}
	return nil
}

func keyframe(c Codec, units [][]byte) bool {
	switch c {
	case VP9:
		return VP9Keyframe(units[0])
	case AV1:
		for _, u := range units {
			if u[0]>>3&0x0f == 1 { // OBU_SEQUENCE_HEADER
				return true
			}
		}
	case H265:
		for _, u := range units {
			if t := u[0] >> 1 & 0x3f; t >= 16 && t <= 23 {
				return true
			}
		}
	}
	return false
}

// KeyframeStart reads one RTP payload of a VP9 or AV1 stream and, when it
// begins a key frame a stream can start from, returns what configures it
// as the depacketizer's frames carry it: VP9, the frame's first bytes (its
// uncompressed header, the base spatial layer only); AV1, the sequence
// header OBU of a packet that starts a coded video sequence (N bit) with
// it. It is for looking at packets that are not depacketized (simulcast
// layers not forwarded) and allocates nothing.
func KeyframeStart(c Codec, p []byte) ([]byte, bool) {
	switch c {
	case VP9:
		payload, b, _, sid, err := vp9Descriptor(p)
		if err != nil || !b || sid != 0 || !VP9Keyframe(payload) {
			return nil, false
		}
		return payload, true
	case AV1:
		if len(p) < 2 || p[0]&0x80 != 0 || p[0]&0x08 == 0 { // Z: a continuation; N: no new sequence
			return nil, false
		}
		w := int(p[0] >> 4 & 0x03)
		for k, b := 0, p[1:]; len(b) > 0; k++ {
			elem := b
			if w == 0 || k < w-1 {
				size, n, ok := leb128(b)
				if !ok || size > uint64(len(b)-n) {
					return nil, false
				}
				elem, b = b[n:n+int(size)], b[n+int(size):]
			} else {
				b = nil
			}
			if len(elem) > 0 && elem[0]>>3&0x0f == 1 { // OBU_SEQUENCE_HEADER
				// Not the last element, or a whole OBU: the last element
				// continues in the next packet only with the Y bit.
				if len(b) > 0 || p[0]&0x40 == 0 {
					return elem, true
				}
				return nil, false
			}
		}
	}
	return nil, false
}

// VP9Keyframe reads a VP9 frame's uncompressed header far enough to tell a
// key frame (VP9 spec 6.2): frame marker, profile, show_existing_frame,
// frame_type 0.
func VP9Keyframe(frame []byte) bool {
	if len(frame) < 1 || frame[0]>>6 != 2 {
		return false
	}
	profile := frame[0]>>5&1 | frame[0]>>4&1<<1
	bit := 4 // the next bit, counted from the top of the byte
	if profile == 3 {
		bit++ // reserved_zero
	}
	if frame[0]>>(7-bit)&1 != 0 {
		return false // show_existing_frame
	}
	bit++
	return frame[0]>>(7-bit)&1 == 0
}
