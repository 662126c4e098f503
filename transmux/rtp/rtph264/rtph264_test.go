package rtph264

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// Realistic NAL units. The byte after a slice header has its top bit set
// when first_mb_in_slice is 0, i.e. the slice starts a picture.
var (
	sps = []byte{0x67, 0x42, 0xC0, 0x1F, 0xDA, 0x01, 0x40, 0x16, 0xEC, 0x04, 0x40}
	pps = []byte{0x68, 0xCE, 0x3C, 0x80}
	aud = []byte{0x09, 0xF0}
	sei = []byte{0x06, 0x05, 0x01, 0xAA, 0x80}
)

// slice returns a slice NAL unit of the given type and size whose content is
// derived from seed, starting a picture if first is set.
func slice(typ byte, first bool, size int, seed int64) []byte {
	n := make([]byte, size)
	rand.New(rand.NewSource(seed)).Read(n)
	n[0] = 0x60 | typ
	if typ == naluNonIDR {
		n[0] = 0x40 | typ
	}
	if first {
		n[1] |= 0x80
	} else {
		n[1] &^= 0x80
	}
	return n
}

// stream builds RTP packets with consecutive sequence numbers.
type stream struct {
	seq uint16
}

func (s *stream) pkt(ts uint32, marker bool, payload []byte) *rtp.Packet {
	p := &rtp.Packet{
		Header: rtp.Header{
			Version: 2, PayloadType: 102, SequenceNumber: s.seq,
			Timestamp: ts, SSRC: 1, Marker: marker,
		},
		Payload: payload,
	}
	s.seq++
	return p
}

// frame packetizes NAL units with pion's payloader, marker on the last.
func (s *stream) frame(ts uint32, mtu uint16, nalus ...[]byte) []*rtp.Packet {
	var annexB []byte
	for _, n := range nalus {
		annexB = append(annexB, 0, 0, 0, 1)
		annexB = append(annexB, n...)
	}
	var pl codecs.H264Payloader
	payloads := pl.Payload(mtu, annexB)
	out := make([]*rtp.Packet, len(payloads))
	for i, p := range payloads {
		out[i] = s.pkt(ts, i == len(payloads)-1, p)
	}
	return out
}

func stapA(nalus ...[]byte) []byte {
	out := []byte{0x78}
	for _, n := range nalus {
		out = append(out, byte(len(n)>>8), byte(len(n)))
		out = append(out, n...)
	}
	return out
}

// fuA splits a NAL unit into FU-A payloads of at most size bytes of data.
func fuA(nalu []byte, size int) [][]byte {
	var out [][]byte
	data := nalu[1:]
	for i := 0; len(data) > 0; i++ {
		n := min(size, len(data))
		hdr := nalu[0] & 0x1F
		if i == 0 {
			hdr |= 0x80
		}
		if n == len(data) {
			hdr |= 0x40
		}
		out = append(out, append([]byte{nalu[0]&0xE0 | naluFUA, hdr}, data[:n]...))
		data = data[n:]
	}
	return out
}

type result struct {
	aus  []AccessUnit
	errs []error
}

// feed pushes packets, copying every access unit (they are only valid until
// the next Push).
func feed(t *testing.T, d *Depacketizer, pkts []*rtp.Packet, lost ...bool) result {
	t.Helper()
	var r result
	for i, p := range pkts {
		l := len(lost) > i && lost[i]
		au, ok, err := d.Push(p, l)
		if err != nil {
			r.errs = append(r.errs, err)
		}
		if ok {
			r.aus = append(r.aus, clone(t, au))
		}
	}
	return r
}

func clone(t *testing.T, au AccessUnit) AccessUnit {
	t.Helper()
	if len(au.NALUs) == 0 {
		t.Fatal("emitted access unit without NAL units")
	}
	c := au
	c.NALUs = nil
	for _, n := range au.NALUs {
		if len(n) == 0 {
			t.Fatal("emitted empty NAL unit")
		}
		c.NALUs = append(c.NALUs, append([]byte(nil), n...))
	}
	if au.SPS != nil {
		c.SPS = append([]byte(nil), au.SPS...)
	}
	if au.PPS != nil {
		c.PPS = append([]byte(nil), au.PPS...)
	}
	return c
}

func wantNALUs(t *testing.T, au AccessUnit, want ...[]byte) {
	t.Helper()
	if len(au.NALUs) != len(want) {
		t.Fatalf("got %d NAL units, want %d", len(au.NALUs), len(want))
	}
	for i := range want {
		if !bytes.Equal(au.NALUs[i], want[i]) {
			t.Fatalf("NAL unit %d differs: got %d bytes %x..., want %d bytes %x...",
				i, len(au.NALUs[i]), au.NALUs[i][:min(8, len(au.NALUs[i]))], len(want[i]), want[i][:min(8, len(want[i]))])
		}
	}
}

func TestSingleNAL(t *testing.T) {
	var d Depacketizer
	var s stream
	p := slice(naluNonIDR, true, 500, 1)
	r := feed(t, &d, s.frame(3000, 1200, p))
	if len(r.aus) != 1 || len(r.errs) != 0 {
		t.Fatalf("aus %d errs %v", len(r.aus), r.errs)
	}
	au := r.aus[0]
	wantNALUs(t, au, p)
	if au.IDR || au.SPS != nil || au.PPS != nil || au.Timestamp != 3000 {
		t.Fatalf("au %+v", au)
	}
	if d.Stats() != (Stats{AccessUnits: 1}) {
		t.Fatalf("stats %+v", d.Stats())
	}
}

func TestSTAPAFromPayloader(t *testing.T) {
	var d Depacketizer
	var s stream
	idr := slice(naluIDR, true, 900, 2)
	pkts := s.frame(0, 1200, aud, sps, pps, idr)
	if pkts[0].Payload[0]&0x1F != naluSTAPA {
		t.Fatalf("payloader did not make a STAP-A: type %d", pkts[0].Payload[0]&0x1F)
	}
	r := feed(t, &d, pkts)
	if len(r.aus) != 1 || len(r.errs) != 0 {
		t.Fatalf("aus %d errs %v", len(r.aus), r.errs)
	}
	au := r.aus[0]
	wantNALUs(t, au, sps, pps, idr) // pion's payloader drops the AUD
	if !au.IDR || !bytes.Equal(au.SPS, sps) || !bytes.Equal(au.PPS, pps) {
		t.Fatalf("au %+v", au)
	}
}

func TestSTAPAByHand(t *testing.T) {
	var d Depacketizer
	var s stream
	p := slice(naluNonIDR, true, 100, 3)
	r := feed(t, &d, []*rtp.Packet{s.pkt(9, true, stapA(aud, sei, p))})
	if len(r.aus) != 1 {
		t.Fatalf("aus %d errs %v", len(r.aus), r.errs)
	}
	wantNALUs(t, r.aus[0], aud, sei, p)
}

func TestFUAAcrossManyPackets(t *testing.T) {
	var d Depacketizer
	var s stream
	idr := slice(naluIDR, true, 100_000, 4)
	pkts := s.frame(90000, 1200, sps, pps, idr)
	if len(pkts) < 80 {
		t.Fatalf("only %d packets", len(pkts))
	}
	r := feed(t, &d, pkts)
	if len(r.aus) != 1 || len(r.errs) != 0 {
		t.Fatalf("aus %d errs %v", len(r.aus), r.errs)
	}
	wantNALUs(t, r.aus[0], sps, pps, idr)
	if !r.aus[0].IDR {
		t.Fatal("not IDR")
	}
}

func TestMultiSliceIDR(t *testing.T) {
	var d Depacketizer
	var s stream
	s1 := slice(naluIDR, true, 5000, 5)
	s2 := slice(naluIDR, false, 3000, 6)
	s3 := slice(naluIDR, false, 700, 7)
	var pkts []*rtp.Packet
	pkts = append(pkts, s.pkt(0, false, stapA(sps, pps)))
	for _, nal := range [][]byte{s1, s2} {
		for _, p := range fuA(nal, 1000) {
			pkts = append(pkts, s.pkt(0, false, p))
		}
	}
	pkts = append(pkts, s.pkt(0, true, s3))
	r := feed(t, &d, pkts)
	if len(r.aus) != 1 || len(r.errs) != 0 {
		t.Fatalf("aus %d errs %v", len(r.aus), r.errs)
	}
	wantNALUs(t, r.aus[0], sps, pps, s1, s2, s3)
}

func TestSPSPPSInOwnPackets(t *testing.T) {
	// OBS-style: SPS and PPS as single NAL unit packets.
	var d Depacketizer
	var s stream
	idr := slice(naluIDR, true, 4000, 8)
	pkts := []*rtp.Packet{s.pkt(5, false, sps), s.pkt(5, false, pps)}
	for _, p := range fuA(idr, 1100) {
		pkts = append(pkts, s.pkt(5, false, p))
	}
	pkts[len(pkts)-1].Marker = true
	r := feed(t, &d, pkts)
	if len(r.aus) != 1 || len(r.errs) != 0 {
		t.Fatalf("aus %d errs %v", len(r.aus), r.errs)
	}
	wantNALUs(t, r.aus[0], sps, pps, idr)
	if !bytes.Equal(r.aus[0].SPS, sps) || !bytes.Equal(r.aus[0].PPS, pps) || !r.aus[0].IDR {
		t.Fatal("SPS/PPS/IDR not reported")
	}
}

func TestLostMiddleFragment(t *testing.T) {
	for _, how := range []string{"lost flag", "sequence gap"} {
		t.Run(how, func(t *testing.T) {
			var d Depacketizer
			var s stream
			big := s.frame(0, 1200, slice(naluIDR, true, 20000, 9))
			next := slice(naluNonIDR, true, 3000, 10)
			after := s.frame(3000, 1200, next)

			pkts := append(append([]*rtp.Packet{}, big[:7]...), big[8:]...)
			lost := make([]bool, len(pkts))
			if how == "lost flag" {
				lost[7] = true
				// Renumber so that only the flag tells.
				for i, p := range pkts {
					p.SequenceNumber = uint16(i)
				}
				for i, p := range after {
					p.SequenceNumber = uint16(len(pkts) + i)
				}
			}
			r := feed(t, &d, append(pkts, after...), lost...)
			if len(r.errs) != 0 {
				t.Fatalf("errs %v", r.errs)
			}
			if len(r.aus) != 1 || r.aus[0].Timestamp != 3000 {
				t.Fatalf("aus %+v", r.aus)
			}
			wantNALUs(t, r.aus[0], next)
			if st := d.Stats(); st.DroppedIncomplete != 1 || st.AccessUnits != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestLostLastFragmentWithMarker(t *testing.T) {
	var d Depacketizer
	var s stream
	f1 := s.frame(0, 1200, slice(naluIDR, true, 9000, 11))
	p2 := slice(naluNonIDR, true, 2000, 12)
	f2 := s.frame(3000, 1200, p2)
	pkts := append(f1[:len(f1)-1], f2...)
	r := feed(t, &d, pkts)
	if len(r.aus) != 1 || r.aus[0].Timestamp != 3000 || len(r.errs) != 0 {
		t.Fatalf("aus %+v errs %v", r.aus, r.errs)
	}
	wantNALUs(t, r.aus[0], p2)
	if st := d.Stats(); st.DroppedIncomplete != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLostStartOfNextFrame(t *testing.T) {
	// Frame 1 complete; frame 2's first packet (its SPS) lost: frame 2
	// might miss anything, so it is dropped; frame 3 is fine.
	var d Depacketizer
	var s stream
	f1 := s.frame(0, 1200, slice(naluNonIDR, true, 500, 13))
	f2 := []*rtp.Packet{s.pkt(3000, false, sps), s.pkt(3000, false, pps), s.pkt(3000, true, slice(naluIDR, true, 800, 14))}
	f3 := s.frame(6000, 1200, slice(naluNonIDR, true, 600, 15))
	pkts := append(append(f1, f2[1:]...), f3...)
	r := feed(t, &d, pkts)
	if len(r.aus) != 2 || r.aus[0].Timestamp != 0 || r.aus[1].Timestamp != 6000 {
		t.Fatalf("aus %+v", r.aus)
	}
	if st := d.Stats(); st.DroppedIncomplete != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLossBeforeEvidentStart(t *testing.T) {
	// Losses that end right before a packet starting with an SPS, or
	// with the first slice of a picture, do not drop that picture.
	for name, first := range map[string][][]byte{
		"sps":              {stapA(sps, pps)},
		"aud":              {aud},
		"first slice":      {slice(naluIDR, true, 300, 16)},
		"first slice FU-A": fuA(slice(naluIDR, true, 3000, 16), 1000),
	} {
		t.Run(name, func(t *testing.T) {
			var d Depacketizer
			var s stream
			s.seq = 10
			pkts := []*rtp.Packet{s.pkt(0, false, slice(naluNonIDR, true, 300, 17))}
			s.seq += 3 // lost packets
			for _, pl := range first {
				pkts = append(pkts, s.pkt(3000, false, pl))
			}
			pkts = append(pkts, s.pkt(3000, true, slice(naluIDR, false, 300, 18)))
			r := feed(t, &d, pkts)
			if len(r.aus) != 1 || r.aus[0].Timestamp != 3000 {
				t.Fatalf("aus %+v errs %v", r.aus, r.errs)
			}
		})
	}
	t.Run("not first slice", func(t *testing.T) {
		var d Depacketizer
		var s stream
		pkts := []*rtp.Packet{s.pkt(0, true, slice(naluNonIDR, true, 300, 19))}
		s.seq++
		pkts = append(pkts, s.pkt(3000, true, slice(naluNonIDR, false, 300, 20)))
		if r := feed(t, &d, pkts); len(r.aus) != 1 || d.Stats().DroppedIncomplete != 1 {
			t.Fatalf("aus %d stats %+v", len(r.aus), d.Stats())
		}
	})
}

func TestTimestampChangeWithoutMarker(t *testing.T) {
	var d Depacketizer
	var s stream
	a := slice(naluNonIDR, true, 3000, 21)
	b := slice(naluNonIDR, true, 400, 22)
	f1 := s.frame(0, 1200, a)
	f1[len(f1)-1].Marker = false
	f2 := s.frame(3000, 1200, b)
	f2[len(f2)-1].Marker = false

	var got []uint32
	for _, p := range append(f1, f2...) {
		au, ok, err := d.Push(p, false)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			if p.Timestamp != 3000 {
				t.Fatal("emitted before the timestamp changed")
			}
			wantNALUs(t, au, a)
			got = append(got, au.Timestamp)
		}
	}
	// The third frame's first packet flushes the second.
	au, ok, err := d.Push(s.pkt(6000, true, slice(naluNonIDR, true, 10, 23)), false)
	if err != nil || !ok || au.Timestamp != 3000 {
		t.Fatalf("ok=%v err=%v au=%+v", ok, err, au)
	}
	wantNALUs(t, au, b)
	if len(got) != 1 || got[0] != 0 {
		t.Fatalf("got %v", got)
	}
	// And the one-packet third frame, which had its marker, is returned
	// by the next Push.
	au, ok, err = d.Push(s.pkt(9000, false, slice(naluNonIDR, true, 10, 24)), false)
	if err != nil || !ok || au.Timestamp != 6000 {
		t.Fatalf("ok=%v err=%v au=%+v", ok, err, au)
	}
}

func TestPaddingPackets(t *testing.T) {
	var d Depacketizer
	var s stream
	p1 := slice(naluNonIDR, true, 300, 25)
	p2 := slice(naluNonIDR, true, 300, 26)
	pkts := s.frame(0, 1200, p1)
	pkts = append(pkts, s.pkt(0, false, nil), s.pkt(0, false, nil)) // probing
	pkts = append(pkts, s.frame(3000, 1200, p2)...)
	r := feed(t, &d, pkts)
	if len(r.aus) != 2 || d.Stats().DroppedIncomplete != 0 {
		t.Fatalf("aus %d stats %+v", len(r.aus), d.Stats())
	}

	// A loss reported on a padding packet applies to the next one.
	pkts = []*rtp.Packet{s.pkt(6000, false, slice(naluNonIDR, true, 10, 27)), s.pkt(6000, false, nil)}
	pkts = append(pkts, s.pkt(6000, true, slice(naluNonIDR, false, 10, 28)))
	r = feed(t, &d, pkts, false, true, false)
	if len(r.aus) != 0 || d.Stats().DroppedIncomplete != 1 {
		t.Fatalf("aus %d stats %+v", len(r.aus), d.Stats())
	}
}

func TestGarbage(t *testing.T) {
	idr := slice(naluIDR, true, 3000, 29)
	frags := fuA(idr, 1000)
	cases := []struct {
		name    string
		payload []byte
		want    error
	}{
		{"STAP-B", []byte{0x19, 0, 0, 0, 2, 0x41, 0x80}, ErrUnsupported},
		{"MTAP16", []byte{0x1A, 0, 0, 0}, ErrUnsupported},
		{"MTAP24", []byte{0x1B, 0, 0, 0}, ErrUnsupported},
		{"FU-B", []byte{0x1D, 0x85, 0, 0, 1}, ErrUnsupported},
		{"type 0", []byte{0x00, 1, 2}, ErrMalformed},
		{"type 30", []byte{0x1E, 1, 2}, ErrMalformed},
		{"forbidden bit", []byte{0xC1, 0x80}, ErrMalformed},
		{"empty STAP-A", []byte{0x78}, ErrMalformed},
		{"STAP-A short size", []byte{0x78, 0}, ErrMalformed},
		{"STAP-A overrun", []byte{0x78, 0, 9, 0x41, 0x80}, ErrMalformed},
		{"STAP-A zero size", []byte{0x78, 0, 0, 0, 2, 0x41, 0x80}, ErrMalformed},
		{"STAP-A trailing", append(stapA(sps), 0), ErrMalformed},
		{"STAP-A bad inner", stapA([]byte{0x1C, 0x85}), ErrMalformed},
		{"FU-A short", []byte{0x7C}, ErrMalformed},
		{"FU-A start+end", []byte{0x7C, 0xC5, 1}, ErrMalformed},
		{"FU-A no start", frags[1], ErrMalformed},
		{"FU-A of STAP-A", []byte{0x7C, 0x98, 1}, ErrMalformed},
		{"FU-A forbidden bit", []byte{0xFC, 0x85, 1}, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var d Depacketizer
			var s stream
			// Good frame, bad packet in the second frame, good third.
			good := slice(naluNonIDR, true, 100, 30)
			pkts := s.frame(0, 1200, good)
			pkts = append(pkts, s.pkt(3000, false, sps), s.pkt(3000, false, c.payload), s.pkt(3000, true, idr[:50]))
			pkts = append(pkts, s.frame(6000, 1200, good)...)
			r := feed(t, &d, pkts)
			if len(r.errs) != 1 || !errors.Is(r.errs[0], c.want) {
				t.Fatalf("errs %v, want one %v", r.errs, c.want)
			}
			if len(r.aus) != 2 || r.aus[0].Timestamp != 0 || r.aus[1].Timestamp != 6000 {
				t.Fatalf("aus %+v", r.aus)
			}
			if st := d.Stats(); st.DroppedMalformed != 1 || st.AccessUnits != 2 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestFUASequenceErrors(t *testing.T) {
	a := fuA(slice(naluIDR, true, 3000, 31), 1000)
	b := fuA(slice(naluIDR, false, 3000, 32), 1000)
	p := slice(naluNonIDR, true, 50, 33)
	cases := map[string][][]byte{
		"new start without end":    {a[0], a[1], b[0], b[1], b[2]},
		"single NAL inside FU-A":   {a[0], p, a[1], a[2]},
		"marker before end":        {a[0], a[1]},
		"timestamp change in FU-A": {a[0]},
	}
	for name, payloads := range cases {
		t.Run(name, func(t *testing.T) {
			var d Depacketizer
			var s stream
			var pkts []*rtp.Packet
			for _, pl := range payloads {
				pkts = append(pkts, s.pkt(0, false, pl))
			}
			if name == "marker before end" {
				pkts[len(pkts)-1].Marker = true
			}
			pkts = append(pkts, s.frame(3000, 1200, p)...)
			r := feed(t, &d, pkts)
			if len(r.errs) != 1 || !errors.Is(r.errs[0], ErrMalformed) {
				t.Fatalf("errs %v", r.errs)
			}
			if len(r.aus) != 1 || r.aus[0].Timestamp != 3000 {
				t.Fatalf("aus %+v", r.aus)
			}
		})
	}
}

func TestErrorAndAccessUnitTogether(t *testing.T) {
	var d Depacketizer
	var s stream
	p := slice(naluNonIDR, true, 50, 34)
	if _, ok, err := d.Push(s.pkt(0, false, p), false); ok || err != nil {
		t.Fatal(ok, err)
	}
	au, ok, err := d.Push(s.pkt(3000, false, []byte{0x19, 0}), false)
	if !ok || !errors.Is(err, ErrUnsupported) {
		t.Fatalf("ok=%v err=%v", ok, err)
	}
	wantNALUs(t, au, p)
}

func TestAccessUnitTooLarge(t *testing.T) {
	t.Run("bytes", func(t *testing.T) {
		var d Depacketizer
		var s stream
		frags := fuA(slice(naluIDR, true, MaxAccessUnitSize+10, 35), 1200)
		var errs []error
		for i, f := range frags {
			_, ok, err := d.Push(s.pkt(0, i == len(frags)-1, f), false)
			if ok {
				t.Fatal("emitted oversized access unit")
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) != 1 || !errors.Is(errs[0], ErrAccessUnitTooLarge) || d.Stats().DroppedMalformed != 1 {
			t.Fatalf("errs %v stats %+v", errs, d.Stats())
		}
	})
	t.Run("NAL units", func(t *testing.T) {
		var d Depacketizer
		var s stream
		tiny := []byte{0x06, 0x80}
		var nalus [][]byte
		for i := 0; i < 200; i++ {
			nalus = append(nalus, tiny)
		}
		var errs []error
		n := MaxNALUsPerAccessUnit/200 + 1
		for i := 0; i < n; i++ {
			_, ok, err := d.Push(s.pkt(0, i == n-1, stapA(nalus...)), false)
			if ok {
				t.Fatal("emitted access unit over the NAL unit limit")
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) != 1 || !errors.Is(errs[0], ErrAccessUnitTooLarge) {
			t.Fatalf("errs %v", errs)
		}
	})
}

func TestNilPacket(t *testing.T) {
	var d Depacketizer
	if _, ok, err := d.Push(nil, false); ok || !errors.Is(err, ErrNilPacket) {
		t.Fatal(ok, err)
	}
}

// An access unit completed by a timestamp change (no marker bit seen) is
// returned by the Push that starts the next one; that Push must not
// overwrite it.
func TestReturnedAccessUnitSurvivesItsPush(t *testing.T) {
	var d Depacketizer
	var s stream
	a := slice(naluNonIDR, true, 2000, 36)
	f1 := s.frame(0, 1200, a)
	f1[len(f1)-1].Marker = false
	for _, p := range f1 {
		if _, ok, _ := d.Push(p, false); ok {
			t.Fatal("access unit returned before its end was known")
		}
	}
	au, ok, _ := d.Push(s.pkt(3000, false, fuA(slice(naluIDR, true, 5000, 37), 1000)[0]), false)
	if !ok {
		t.Fatal("the timestamp change did not complete the access unit")
	}
	wantNALUs(t, au, a)
}

// With marker bits, every access unit is built in the same buffer: the
// second one never grows, so a stream holds one keyframe's worth, not two.
func TestMarkedAccessUnitsShareOneBuffer(t *testing.T) {
	var d Depacketizer
	var s stream
	ts := uint32(0)
	for i := range 6 {
		size := 300
		if i%2 == 0 {
			size = 40000 // a keyframe
		}
		want := slice(naluNonIDR, true, size, int64(50+i))
		r := feed(t, &d, s.frame(ts, 1200, want))
		if len(r.aus) != 1 {
			t.Fatalf("frame %d: %d access units", i, len(r.aus))
		}
		wantNALUs(t, r.aus[0], want)
		ts += 3000
	}
	if c0, c1 := cap(d.au[0].buf.B), cap(d.au[1].buf.B); c0 < 40000 || c1 > 0 {
		t.Fatalf("buffer capacities %d and %d, want one keyframe-sized and one unused", c0, c1)
	}
}

func TestReset(t *testing.T) {
	var d Depacketizer
	var s stream
	d.Push(s.pkt(0, false, slice(naluNonIDR, true, 50, 38)), false)
	d.Reset()
	s.seq += 100
	p := slice(naluNonIDR, false, 50, 39)
	r := feed(t, &d, []*rtp.Packet{s.pkt(3000, true, p)})
	if len(r.aus) != 1 {
		t.Fatalf("aus %d", len(r.aus))
	}
	wantNALUs(t, r.aus[0], p)
}

func FuzzDepacketize(f *testing.F) {
	var s stream
	for _, p := range s.frame(0, 100, sps, pps, slice(naluIDR, true, 300, 40)) {
		f.Add(p.Payload, byte(0))
	}
	f.Add(stapA(sps, pps, aud), byte(1))
	f.Add([]byte{0x7C, 0x85, 1, 2, 3, 0x7C, 0x45, 4}, byte(2))
	f.Fuzz(func(t *testing.T, data []byte, flags byte) {
		var d Depacketizer
		var ts uint32
		seq := uint16(0)
		// Split data into payloads; each control byte chooses marker,
		// loss, timestamp change and the payload length.
		for len(data) > 0 {
			ctl := data[0] ^ flags
			data = data[1:]
			n := min(int(ctl&0x0F)*7, len(data))
			payload := data[:n]
			data = data[n:]
			if ctl&0x40 != 0 {
				ts += 3000
			}
			if ctl&0x20 != 0 {
				seq++ // sequence gap
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: ctl&0x80 != 0}, Payload: payload}
			seq++
			au, ok, _ := d.Push(pkt, ctl&0x10 != 0)
			if !ok {
				continue
			}
			if len(au.NALUs) == 0 {
				t.Fatal("empty access unit")
			}
			size := 0
			for _, nalu := range au.NALUs {
				if len(nalu) == 0 {
					t.Fatal("empty NAL unit")
				}
				if nalu[0]&0x80 != 0 || nalu[0]&0x1F == 0 || nalu[0]&0x1F > 23 {
					t.Fatalf("bad NAL header %x", nalu[0])
				}
				size += len(nalu)
			}
			if size > MaxAccessUnitSize || len(au.NALUs) > MaxNALUsPerAccessUnit {
				t.Fatal("limits exceeded")
			}
		}
	})
}
