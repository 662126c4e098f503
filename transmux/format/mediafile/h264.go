// Package mediafile reads the test media in the repository's testdata/
// directory: Annex B H.264 elementary streams split into access units
// (ReadH264File) and the Opus packets of Ogg Opus files (ReadOpusFile).
// SliceDigest fingerprints an access unit so that a sender and a receiver
// can match frames.
//
// It has no dependency on the rest of castbridge, so tests anywhere in the
// tree (and cmd/loadgen) can use it.
package mediafile

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"runtime"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// Frame is one H.264 access unit read from an Annex B file.
type Frame struct {
	// NALUs are the NAL units of the access unit in file order, without
	// start codes (parameter sets and SEI included).
	NALUs [][]byte
	// IDR tells whether the access unit holds an IDR picture.
	IDR bool
}

// TestdataPath returns the absolute path of a file in the repository's
// testdata directory (e.g. TestdataPath("video.h264")), independent of the
// working directory of the test that calls it.
func TestdataPath(name string) string {
	// The module root is the nearest directory above this source file
	// holding go.mod; failing that (a -trimpath build), above the working
	// directory.
	if _, file, _, ok := runtime.Caller(0); ok {
		if root, ok := moduleRoot(filepath.Dir(file)); ok {
			return filepath.Join(root, "testdata", name)
		}
	}
	if wd, err := os.Getwd(); err == nil {
		if root, ok := moduleRoot(wd); ok {
			return filepath.Join(root, "testdata", name)
		}
	}
	return filepath.Join("testdata", name)
}

// moduleRoot returns dir or its nearest parent holding a go.mod file.
func moduleRoot(dir string) (string, bool) {
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// ReadH264File reads an Annex B H.264 elementary stream and splits it into
// access units. A new access unit starts at an access unit delimiter, at an
// SPS, PPS or SEI that follows a slice, and at a slice with
// first_mb_in_slice == 0 that follows a slice (H.264 7.4.1.2.3; sufficient
// for encoders without arbitrary slice order, which baseline x264 and
// OpenH264 never use).
func ReadH264File(path string) ([]Frame, error) {
	buf, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	nalus, err := splitAnnexB(buf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}

	var frames []Frame
	var cur [][]byte
	curHasVCL := false
	flush := func() {
		if len(cur) > 0 {
			frames = append(frames, Frame{NALUs: cur, IDR: h264.IsRandomAccess(cur)})
		}
		cur = nil
		curHasVCL = false
	}
	for _, n := range nalus {
		typ := h264.NALUType(n[0] & 0x1f)
		switch {
		case typ == h264.NALUTypeAccessUnitDelimiter:
			flush()
		case isVCL(typ):
			if curHasVCL && firstMBInSliceIsZero(n) {
				flush()
			}
		case typ == h264.NALUTypeSPS || typ == h264.NALUTypePPS || typ == h264.NALUTypeSEI ||
			(typ >= h264.NALUTypePrefix && typ <= h264.NALUTypeReserved18):
			if curHasVCL {
				flush()
			}
		}
		cur = append(cur, n)
		if isVCL(typ) {
			curHasVCL = true
		}
	}
	flush()
	if len(frames) == 0 {
		return nil, fmt.Errorf("%s: no access units", path)
	}
	return frames, nil
}

// splitAnnexB splits a whole Annex B stream into NAL units. mediacommon's
// h264.AnnexB.Unmarshal does the same for one access unit but caps the
// number of NAL units, so a whole file needs its own loop.
func splitAnnexB(buf []byte) ([][]byte, error) {
	start := bytes.Index(buf, []byte{0, 0, 1})
	if start < 0 {
		return nil, errors.New("no Annex B start code")
	}
	for i := 0; i < start; i++ {
		if buf[i] != 0 {
			return nil, errors.New("data before the first start code")
		}
	}
	pos := start + 3
	var out [][]byte
	for pos < len(buf) {
		i := bytes.Index(buf[pos:], []byte{0, 0, 1})
		end := len(buf)
		next := len(buf)
		if i >= 0 {
			end = pos + i
			next = pos + i + 3
		}
		// trailing zero bytes belong to the next start code (or are
		// trailing_zero_8bits)
		for end > pos && buf[end-1] == 0 {
			end--
		}
		if end > pos {
			out = append(out, buf[pos:end:end])
		}
		pos = next
	}
	if len(out) == 0 {
		return nil, h264.ErrAnnexBNoNALUs
	}
	return out, nil
}

func isVCL(typ h264.NALUType) bool {
	return typ >= h264.NALUTypeNonIDR && typ <= h264.NALUTypeIDR
}

// firstMBInSliceIsZero reports whether the slice header's first field,
// first_mb_in_slice (ue(v)), is 0: its Exp-Golomb code is the single bit 1.
func firstMBInSliceIsZero(nalu []byte) bool {
	return len(nalu) > 1 && nalu[1]&0x80 != 0
}

// IsSlice reports whether a NAL unit is a coded slice (type 1 or 5), the
// units SliceDigest hashes.
func IsSlice(nalu []byte) bool {
	if len(nalu) == 0 {
		return false
	}
	typ := h264.NALUType(nalu[0] & 0x1f)
	return typ == h264.NALUTypeNonIDR || typ == h264.NALUTypeIDR
}

// SliceDigest is a 64-bit hash (maphash: comparable within one process
// only) over the slice NAL units (types 1 and 5)
// of an access unit, in order, each prefixed by its length. Parameter sets,
// SEI and AUDs are ignored, so a sender and a receiver can compare frames
// whatever the placement of SPS/PPS/AUD. NAL units are taken without start
// codes or length prefixes (as in Frame.NALUs or an AVCC/FLV payload once
// split).
func SliceDigest(nalus [][]byte) uint64 {
	h := newDigest()
	var l [4]byte
	for _, n := range nalus {
		if !IsSlice(n) {
			continue
		}
		l[0], l[1], l[2], l[3] = byte(len(n)>>24), byte(len(n)>>16), byte(len(n)>>8), byte(len(n))
		h.Write(l[:])
		h.Write(n)
	}
	return h.Sum64()
}

// ParameterSets returns the first SPS and PPS among an access unit's NALUs
// (nil where there is none).
func ParameterSets(nalus [][]byte) (sps, pps []byte) {
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			if sps == nil {
				sps = n
			}
		case h264.NALUTypePPS:
			if pps == nil {
				pps = n
			}
		}
	}
	return sps, pps
}

// digestSeed is the process's seed for frame digests: a sender and a
// receiver compare digests in one process (loadgen, the tests).
var digestSeed = maphash.MakeSeed()

// newDigest is a frame digest's hash. maphash, not FNV-64a: FNV's byte at
// a time was 17% of loadgen's CPU at 100 streams (a digest of every frame
// sent and of every frame the sink received), CPU taken from the server
// a saturation search measures.
func newDigest() *maphash.Hash {
	h := new(maphash.Hash)
	h.SetSeed(digestSeed)
	return h
}
