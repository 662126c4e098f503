package rtpframe

import (
	"bytes"
	"errors"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/castbridge/castbridge/transmux/format/mediafile"
)

const mtu = 1200

// sent is one frame of the test media as a publisher sends it.
type sent struct {
	units    [][]byte // what Push must give back
	payloads [][]byte
	key      bool
}

func vp9Frames(t testing.TB) []sent {
	frames, err := mediafile.ReadIVFFile(mediafile.TestdataPath("video-vp9.ivf"))
	if err != nil {
		t.Fatal(err)
	}
	pay := &codecs.VP9Payloader{InitialPictureIDFn: func() uint16 { return 7 }}
	var out []sent
	for _, f := range frames {
		out = append(out, sent{units: [][]byte{f}, payloads: pay.Payload(mtu, f), key: VP9Keyframe(f)})
	}
	return out
}

func av1Frames(t testing.TB) []sent {
	frames, err := mediafile.ReadIVFFile(mediafile.TestdataPath("video-av1.ivf"))
	if err != nil {
		t.Fatal(err)
	}
	pay := &codecs.AV1Payloader{}
	var out []sent
	for _, tu := range frames {
		obus, err := mediafile.SplitAV1OBUs(tu)
		if err != nil {
			t.Fatal(err)
		}
		s := sent{}
		for _, o := range obus {
			switch o[0] >> 3 & 0x0f {
			case 2: // temporal delimiter: RTP leaves it out
				continue
			case 1:
				s.key = true
			}
			s.units = append(s.units, o)
			s.payloads = append(s.payloads, pay.Payload(mtu, o)...)
		}
		out = append(out, s)
	}
	return out
}

func h265Frames(t testing.TB) []sent {
	frames, err := mediafile.ReadH265File(mediafile.TestdataPath("video-hevc.h265"))
	if err != nil {
		t.Fatal(err)
	}
	var out []sent
	for _, f := range frames {
		out = append(out, sent{units: f.NALUs, payloads: mediafile.PayloadH265(mtu, f.NALUs), key: f.IRAP})
	}
	return out
}

func packets(frames []sent) []*rtp.Packet {
	var pkts []*rtp.Packet
	seq := uint16(65000) // wraps
	for i, f := range frames {
		for j, p := range f.payloads {
			pkts = append(pkts, &rtp.Packet{
				Header:  rtp.Header{SequenceNumber: seq, Timestamp: uint32(i * 3000), Marker: j == len(f.payloads)-1},
				Payload: p,
			})
			seq++
		}
	}
	return pkts
}

func clone(units [][]byte) [][]byte {
	out := make([][]byte, len(units))
	for i, u := range units {
		out[i] = bytes.Clone(u)
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	for _, c := range []struct {
		codec  Codec
		frames func(testing.TB) []sent
	}{{VP9, vp9Frames}, {AV1, av1Frames}, {H265, h265Frames}} {
		t.Run(c.codec.String(), func(t *testing.T) {
			frames := c.frames(t)
			if len(frames) != 150 {
				t.Fatalf("%d frames in the test media", len(frames))
			}
			d := New(c.codec, nil)
			var got []Frame
			var keys []int
			for _, p := range packets(frames) {
				f, ok, err := d.Push(p, false)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					if f.Keyframe {
						keys = append(keys, len(got))
					}
					f.Units = clone(f.Units)
					got = append(got, f)
				}
			}
			if len(got) != len(frames) {
				t.Fatalf("%d frames out of %d", len(got), len(frames))
			}
			for i, f := range got {
				if f.Timestamp != uint32(i*3000) || f.Keyframe != frames[i].key || len(f.Units) != len(frames[i].units) {
					t.Fatalf("frame %d: ts %d key %v, %d units; want key %v, %d units", i, f.Timestamp, f.Keyframe, len(f.Units), frames[i].key, len(frames[i].units))
				}
				for j := range f.Units {
					if !bytes.Equal(f.Units[j], frames[i].units[j]) {
						t.Fatalf("frame %d unit %d differs", i, j)
					}
				}
			}
			if want := []int{0, 60, 120}; !equalInts(keys, want) {
				t.Fatalf("keyframes at %v, want %v", keys, want)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestLossDropsTheFrameWhole loses one packet in the middle of a multi-packet
// frame: that frame is never returned, the next frame is (its first packet
// starts it), and nothing returned is partial.
func TestLossDropsTheFrameWhole(t *testing.T) {
	for _, c := range []struct {
		codec  Codec
		frames func(testing.TB) []sent
	}{{VP9, vp9Frames}, {AV1, av1Frames}, {H265, h265Frames}} {
		t.Run(c.codec.String(), func(t *testing.T) {
			frames := c.frames(t)
			pkts := packets(frames)
			// The key frame at 60 spans several packets; drop its second.
			first := 0
			for i := 0; i < 60; i++ {
				first += len(frames[i].payloads)
			}
			if len(frames[60].payloads) < 3 {
				t.Fatalf("keyframe 60 has %d packets", len(frames[60].payloads))
			}
			drop := first + 1
			d := New(c.codec, nil)
			seen := map[uint32]bool{}
			lost := false
			for i, p := range pkts {
				if i == drop {
					lost = true
					continue
				}
				f, ok, _ := d.Push(p, lost)
				lost = false
				if ok {
					n := int(f.Timestamp / 3000)
					if len(f.Units) != len(frames[n].units) {
						t.Fatalf("frame %d returned with %d units of %d", n, len(f.Units), len(frames[n].units))
					}
					seen[f.Timestamp] = true
				}
			}
			if seen[60*3000] {
				t.Fatal("the damaged frame was returned")
			}
			if !seen[59*3000] || !seen[61*3000] || len(seen) != 149 {
				t.Fatalf("%d frames returned, 59: %v, 61: %v", len(seen), seen[59*3000], seen[61*3000])
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	for _, c := range []struct {
		codec   Codec
		payload []byte
	}{
		{VP9, []byte{0x80}},                    // picture id missing
		{VP9, []byte{0x04, 1}},                 // data without its start
		{AV1, []byte{0x80, 1}},                 // continuation of nothing
		{AV1, []byte{0x00, 0x05, 1}},           // element longer than the packet
		{H265, []byte{0x62, 0x01, 0x40, 1}},    // FU end without start
		{H265, []byte{0x60, 0x01, 0x00, 0x09}}, // AP size beyond the packet
		{H265, []byte{0x64, 0x01, 0, 0}},       // PACI
	} {
		d := New(c.codec, nil)
		_, ok, err := d.Push(&rtp.Packet{Header: rtp.Header{Marker: true}, Payload: c.payload}, false)
		if ok || err == nil {
			t.Fatalf("%v %x: ok %v err %v", c.codec, c.payload, ok, err)
		}
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
			t.Fatalf("%v %x: %v", c.codec, c.payload, err)
		}
	}
}

func TestVP9Keyframe(t *testing.T) {
	frames, err := mediafile.ReadIVFFile(mediafile.TestdataPath("video-vp9.ivf"))
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		if VP9Keyframe(f) != (i%60 == 0) {
			t.Fatalf("frame %d: keyframe %v", i, VP9Keyframe(f))
		}
	}
	if VP9Keyframe(nil) || VP9Keyframe([]byte{0x00}) {
		t.Fatal("garbage is a keyframe")
	}
}

func TestSteadyStateDoesNotAllocate(t *testing.T) {
	for _, c := range []struct {
		codec  Codec
		frames func(testing.TB) []sent
	}{{VP9, vp9Frames}, {AV1, av1Frames}, {H265, h265Frames}} {
		pkts := packets(c.frames(t))
		d := New(c.codec, nil)
		for _, p := range pkts { // grow the buffers
			_, _, _ = d.Push(p, false)
		}
		i := 0
		n := testing.AllocsPerRun(1000, func() {
			p := pkts[i%len(pkts)]
			p.SequenceNumber = uint16(i)
			_, _, _ = d.Push(p, false)
			i++
		})
		if n != 0 {
			t.Fatalf("%v: %v allocations per packet", c.codec, n)
		}
	}
}

// FuzzPush feeds each depacketizer a sequence of packets cut from the
// input: each starts with a control byte (marker, lost, a new timestamp,
// a sequence gap) and a length, so loss, frame boundaries and the double
// buffer are exercised, not only the payload parsers.
func FuzzPush(f *testing.F) {
	seed := func(payloads ...[]byte) []byte {
		var b []byte
		for i, p := range payloads {
			ctl := byte(0)
			if i == len(payloads)-1 {
				ctl |= 1 // marker
			}
			b = append(b, ctl, byte(min(len(p), 255)))
			b = append(b, p[:min(len(p), 255)]...)
		}
		return b
	}
	for _, fr := range [][]sent{vp9Frames(f)[:2], av1Frames(f)[:2], h265Frames(f)[:2]} {
		for _, s := range fr {
			f.Add(seed(s.payloads...))
		}
	}
	f.Add(seed([]byte{0x70, 0x0a, 1, 2}))
	f.Add(seed([]byte{0x62, 0x01, 0x93, 1}, []byte{0x62, 0x01, 0x53, 2}))
	f.Fuzz(func(t *testing.T, in []byte) {
		for c := VP9; c <= H265; c++ {
			d := New(c, nil)
			seq, ts := uint16(0), uint32(0)
			for b := in; len(b) >= 2; {
				ctl, n := b[0], int(b[1])
				b = b[2:]
				n = min(n, len(b))
				payload := b[:n]
				b = b[n:]
				if ctl&4 != 0 {
					ts += 3000
				}
				if ctl&8 != 0 {
					seq += 2 // a gap
				} else {
					seq++
				}
				fr, ok, _ := d.Push(&rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: ts, Marker: ctl&1 != 0}, Payload: payload}, ctl&2 != 0)
				if ok && len(fr.Units) == 0 {
					t.Fatal("a frame without units")
				}
				size := 0
				for _, u := range fr.Units {
					if len(u) == 0 {
						t.Fatal("an empty unit")
					}
					size += len(u)
				}
				if size > MaxFrameSize || len(fr.Units) > MaxUnitsPerFrame {
					t.Fatalf("a frame of %d bytes in %d units, past the limits", size, len(fr.Units))
				}
			}
		}
	})
}

// TestKeyframeStart: of the clips' packets, exactly the first packet of
// each key frame is a start, with the frame's first bytes (VP9) or its
// sequence header OBU (AV1) as Push gives them back; it allocates nothing.
func TestKeyframeStart(t *testing.T) {
	for c, frames := range map[Codec][]sent{VP9: vp9Frames(t), AV1: av1Frames(t)} {
		keys := 0
		for i, s := range frames {
			for j, p := range s.payloads {
				got, ok := KeyframeStart(c, p)
				if ok != (s.key && j == 0) {
					t.Fatalf("%v frame %d packet %d: start %v, key frame %v", c, i, j, ok, s.key)
				}
				if !ok {
					continue
				}
				keys++
				switch c {
				case VP9:
					if !bytes.HasPrefix(s.units[0], got) || len(got) == 0 {
						t.Fatalf("vp9 frame %d: the start is not the frame's first bytes", i)
					}
				case AV1:
					found := false
					for _, u := range s.units {
						found = found || bytes.Equal(u, got)
					}
					if !found || got[0]>>3&0x0f != 1 {
						t.Fatalf("av1 frame %d: the start is not its sequence header OBU", i)
					}
				}
			}
		}
		if keys < 2 {
			t.Errorf("%v: %d key frame starts in the clip", c, keys)
		}
		p := frames[0].payloads[0]
		if n := testing.AllocsPerRun(100, func() { KeyframeStart(c, p) }); n != 0 {
			t.Errorf("%v: %v allocations", c, n)
		}
	}
	if _, ok := KeyframeStart(H265, []byte{0x26, 0x01, 0xaf}); ok {
		t.Error("an H.265 payload was read")
	}
}

// FuzzKeyframeStart: any payload, no panic; a start found lies within the
// payload and is what it claims to be.
func FuzzKeyframeStart(f *testing.F) {
	for _, fr := range [][]sent{vp9Frames(f)[:2], av1Frames(f)[:2]} {
		for _, s := range fr {
			f.Add(s.payloads[0])
		}
	}
	f.Add([]byte{0x18, 0x82, 0x49, 0x83})
	f.Add([]byte{0x28, 0x0a, 0x0b})
	f.Fuzz(func(t *testing.T, p []byte) {
		if got, ok := KeyframeStart(VP9, p); ok && (!VP9Keyframe(got) || !within(p, got)) {
			t.Fatalf("vp9 start % x of % x", got, p)
		}
		if got, ok := KeyframeStart(AV1, p); ok && (len(got) == 0 || got[0]>>3&0x0f != 1 || !within(p, got)) {
			t.Fatalf("av1 start % x of % x", got, p)
		}
	})
}

// within reports whether sub is a non-empty subslice of p.
func within(p, sub []byte) bool {
	if len(sub) == 0 {
		return false
	}
	for i := range p {
		if &p[i] == &sub[0] {
			return i+len(sub) <= len(p)
		}
	}
	return false
}
