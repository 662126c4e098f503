package mediafile

import "testing"

func TestReadH264File(t *testing.T) {
	frames, err := ReadH264File(TestdataPath("video.h264"))
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 150 {
		t.Fatalf("got %d frames, want 150", len(frames))
	}
	var idrs []int
	digests := map[uint64]int{}
	for i, f := range frames {
		slices := 0
		for _, n := range f.NALUs {
			if IsSlice(n) {
				slices++
			}
		}
		if slices != 4 {
			t.Errorf("frame %d has %d slices, want 4", i, slices)
		}
		if f.IDR {
			idrs = append(idrs, i)
			if typ := f.NALUs[0][0] & 0x1f; typ != 7 || f.NALUs[1][0]&0x1f != 8 {
				t.Errorf("IDR frame %d does not start with SPS, PPS (first NAL type %d)", i, typ)
			}
		}
		d := SliceDigest(f.NALUs)
		if j, dup := digests[d]; dup {
			t.Errorf("frames %d and %d have the same digest", j, i)
		}
		digests[d] = i
	}
	if len(idrs) != 2 || idrs[0] != 0 || idrs[1] != 135 {
		t.Errorf("IDRs at %v, want [0 135]", idrs)
	}
}

func TestSliceDigestIgnoresParameterSets(t *testing.T) {
	sps := []byte{0x67, 1, 2}
	pps := []byte{0x68, 3}
	aud := []byte{0x09, 0xf0}
	s1 := []byte{0x65, 0x88, 1}
	s2 := []byte{0x65, 0x08, 2}
	a := SliceDigest([][]byte{sps, pps, s1, s2})
	b := SliceDigest([][]byte{aud, s1, s2})
	if a != b {
		t.Error("digest depends on non-slice NAL units")
	}
	if a == SliceDigest([][]byte{s2, s1}) {
		t.Error("digest does not depend on slice order")
	}
	// length prefix: splitting differently must not collide
	if SliceDigest([][]byte{{0x41, 1, 2}, {0x41}}) == SliceDigest([][]byte{{0x41, 1}, {2, 0x41}}) {
		t.Error("digest collides across NAL boundaries")
	}
}

func TestParameterSets(t *testing.T) {
	frames, err := ReadH264File(TestdataPath("video.h264"))
	if err != nil {
		t.Fatal(err)
	}
	sps, pps := ParameterSets(frames[0].NALUs)
	if len(sps) == 0 || sps[0]&0x1f != 7 || len(pps) == 0 || pps[0]&0x1f != 8 {
		t.Fatalf("the first access unit's SPS %x and PPS %x", sps, pps)
	}
	if sps, pps := ParameterSets(frames[1].NALUs); sps != nil || pps != nil {
		t.Errorf("a P-frame has parameter sets %x %x", sps, pps)
	}
}
