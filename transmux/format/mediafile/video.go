package mediafile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// maxTestFrame bounds one frame of a test file.
const maxTestFrame = 8 << 20

// ReadIVFFile reads the frames of an IVF file (what FFmpeg and libvpx
// write VP9 and AV1 into): a 32-byte file header, then each frame after a
// 12-byte header (little-endian size, 64-bit timestamp). It returns the
// frames as stored: a VP9 frame (or superframe), or an AV1 temporal unit in
// the low-overhead OBU format.
func ReadIVFFile(path string) ([][]byte, error) {
	buf, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(buf) < 32 || string(buf[:4]) != "DKIF" {
		return nil, fmt.Errorf("%s: not an IVF file", path)
	}
	hdrLen := int(binary.LittleEndian.Uint16(buf[6:8]))
	if hdrLen < 32 || hdrLen > len(buf) {
		return nil, fmt.Errorf("%s: bad IVF header length %d", path, hdrLen)
	}
	var frames [][]byte
	for p := hdrLen; p < len(buf); {
		if len(buf)-p < 12 {
			return nil, fmt.Errorf("%s: truncated frame header", path)
		}
		n := int(binary.LittleEndian.Uint32(buf[p:]))
		p += 12
		if n > maxTestFrame || n > len(buf)-p {
			return nil, fmt.Errorf("%s: frame of %d bytes", path, n)
		}
		frames = append(frames, buf[p:p+n:p+n])
		p += n
	}
	if len(frames) == 0 {
		return nil, fmt.Errorf("%s: no frames", path)
	}
	return frames, nil
}

// SplitAV1OBUs splits a temporal unit in the low-overhead format (every OBU
// with obu_size) into its OBUs, each returned as RTP carries it (RFC AV1
// payload, 4.3): the header with obu_has_size_field cleared and no size.
func SplitAV1OBUs(tu []byte) ([][]byte, error) {
	var out [][]byte
	for len(tu) > 0 {
		h := tu[0]
		if h&0x02 == 0 {
			return nil, errors.New("OBU without obu_size")
		}
		n := 1
		if h&0x04 != 0 {
			n = 2
		}
		if len(tu) < n {
			return nil, errors.New("truncated OBU header")
		}
		var size uint64
		l := 0
		for ; ; l++ {
			if n+l >= len(tu) || l == 8 {
				return nil, errors.New("truncated obu_size")
			}
			b := tu[n+l]
			size |= uint64(b&0x7f) << (7 * l)
			if b&0x80 == 0 {
				l++
				break
			}
		}
		if size > uint64(len(tu)-n-l) {
			return nil, errors.New("OBU longer than its temporal unit")
		}
		obu := make([]byte, 0, n+int(size))
		obu = append(obu, h&^0x02)
		obu = append(obu, tu[1:n]...)
		obu = append(obu, tu[n+l:n+l+int(size)]...)
		out = append(out, obu)
		tu = tu[n+l+int(size):]
	}
	return out, nil
}

// HEVCFrame is one H.265 access unit of an Annex B file.
type HEVCFrame struct {
	NALUs [][]byte // in file order, without start codes
	IRAP  bool     // holds an IRAP picture (IDR, CRA, BLA)
}

// ReadH265File reads an Annex B H.265 elementary stream and splits it into
// access units: a new one starts at an access unit delimiter, at a VPS,
// SPS, PPS or prefix SEI that follows a slice, and at a slice whose
// first_slice_segment_in_pic_flag is set that follows a slice (H.265
// 7.4.2.4.4).
func ReadH265File(path string) ([]HEVCFrame, error) {
	buf, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	nalus, err := splitAnnexB(buf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var frames []HEVCFrame
	var cur HEVCFrame
	hasVCL := false
	flush := func() {
		if len(cur.NALUs) > 0 {
			frames = append(frames, cur)
		}
		cur, hasVCL = HEVCFrame{}, false
	}
	for _, n := range nalus {
		if len(n) < 3 {
			continue
		}
		typ := n[0] >> 1 & 0x3f
		switch {
		case typ == 35: // AUD
			flush()
		case typ < 32: // VCL
			if hasVCL && n[2]&0x80 != 0 {
				flush()
			}
		case typ >= 32 && typ <= 34 || typ == 39:
			if hasVCL {
				flush()
			}
		}
		cur.NALUs = append(cur.NALUs, n)
		if typ < 32 {
			hasVCL = true
			if typ >= 16 && typ <= 23 {
				cur.IRAP = true
			}
		}
	}
	flush()
	if len(frames) == 0 {
		return nil, fmt.Errorf("%s: no access units", path)
	}
	return frames, nil
}

// FrameDigest fingerprints a frame of codec ("" or "h264", "vp9", "av1",
// "hevc") by what every hop keeps of it, so a sender and a receiver can
// match frames: H.264 and H.265 slices (SliceDigest; for H.265 the VCL NAL
// units, which FLV carries while parameter sets go to the sequence start),
// the VP9 frame, the AV1 OBUs as RTP carries them (no obu_size) without
// temporal delimiters.
func FrameDigest(codec string, units [][]byte) uint64 {
	if codec == "" || codec == "h264" {
		return SliceDigest(units)
	}
	h := newDigest()
	var l [4]byte
	for _, u := range units {
		if len(u) == 0 {
			continue
		}
		switch codec {
		case "hevc":
			if u[0]>>1&0x3f >= 32 {
				continue
			}
		case "av1":
			if u[0]>>3&0x0f == 2 {
				continue
			}
		}
		l[0], l[1], l[2], l[3] = byte(len(u)>>24), byte(len(u)>>16), byte(len(u)>>8), byte(len(u))
		h.Write(l[:])
		h.Write(u)
	}
	return h.Sum64()
}
