package flv

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Enhanced RTMP video (veovera enhanced-rtmp v2, "Enhanced Video",
// ExVideoTagHeader): when the top bit of the first byte (IsExHeader) is set,
// the next three bits are the VideoFrameType and the low four a
// VideoPacketType instead of a CodecID; (outside multitrack and ModEx) a
// FOURCC follows, then the body:
//
//	isExHeader = UB[1]                          // 1
//	videoFrameType = UB[3] as VideoFrameType    // 1 key, 2 inter
//	videoPacketType = UB[4] as VideoPacketType  // see below
//	videoFourCc = FOURCC as VideoFourCc         // "av01", "vp09", "hvc1"
//	SequenceStart: the codec's configuration record
//	CodedFrames: hvc1 only, SI24 composition time; then the frame
//	CodedFramesX: the frame (composition time 0)
//	SequenceEnd: nothing
//
// The frame is the codec's sample as ISOBMFF stores it: HEVC NAL units with
// 4-byte lengths (lengthSizeMinusOne 3 in the record), AV1 OBUs in the
// low-overhead format (each with obu_size) without temporal delimiters, a
// VP9 frame (or superframe) as the encoder made it.
const (
	VideoPacketTypeSequenceStart = 0
	VideoPacketTypeCodedFrames   = 1
	VideoPacketTypeSequenceEnd   = 2
	VideoPacketTypeCodedFramesX  = 3

	exVideoHeader = 0x80
)

// E-RTMP VideoFourCc values.
var (
	FourCCAV1  = [4]byte{'a', 'v', '0', '1'}
	FourCCVP9  = [4]byte{'v', 'p', '0', '9'}
	FourCCHEVC = [4]byte{'h', 'v', 'c', '1'}
)

// FourCCNumber is a FourCC as the number onMetaData's videocodecid (and
// audiocodecid) carries for an E-RTMP codec: its four bytes big-endian.
func FourCCNumber(fourCC [4]byte) float64 {
	return float64(binary.BigEndian.Uint32(fourCC[:]))
}

// AppendExVideoSequenceStart appends an E-RTMP video tag body announcing the
// codec with its configuration record (AppendAV1CodecConfigurationRecord,
// AppendVPCodecConfigurationRecord, AppendHEVCDecoderConfigurationRecord).
// The frame type is key, as FFmpeg's muxer writes it.
func AppendExVideoSequenceStart(dst []byte, fourCC [4]byte, record []byte) []byte {
	dst = append(dst, exVideoHeader|frameTypeKey<<4|VideoPacketTypeSequenceStart)
	dst = append(dst, fourCC[:]...)
	return append(dst, record...)
}

// AppendExVideoSequenceEnd appends the E-RTMP video tag body that ends the
// codec's sequence (sent before a clean unpublish).
func AppendExVideoSequenceEnd(dst []byte, fourCC [4]byte) []byte {
	dst = append(dst, exVideoHeader|frameTypeKey<<4|VideoPacketTypeSequenceEnd)
	return append(dst, fourCC[:]...)
}

func exFrameHeader(dst []byte, fourCC [4]byte, keyframe bool, packetType byte) []byte {
	ft := byte(frameTypeInter)
	if keyframe {
		ft = frameTypeKey
	}
	dst = append(dst, exVideoHeader|ft<<4|packetType)
	return append(dst, fourCC[:]...)
}

// grow makes room for n more bytes in one allocation at most.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) < n {
		grown := make([]byte, len(dst), len(dst)+n)
		copy(grown, dst)
		dst = grown
	}
	return dst
}

// AppendVP9Frame appends an E-RTMP video tag body (CodedFramesX, FourCC
// vp09) carrying one VP9 frame. It does not allocate when dst has room.
func AppendVP9Frame(dst, frame []byte, keyframe bool) []byte {
	dst = grow(dst, 5+len(frame))
	dst = exFrameHeader(dst, FourCCVP9, keyframe, VideoPacketTypeCodedFramesX)
	return append(dst, frame...)
}

// AV1 OBU types (AV1 spec 6.2.2) the muxer needs to know.
const (
	AV1OBUSequenceHeader    = 1
	AV1OBUTemporalDelimiter = 2
	AV1OBUFrameHeader       = 3
	AV1OBUFrame             = 6
	AV1OBUPadding           = 15
)

// AV1OBUType is the obu_type of an OBU's first byte.
func AV1OBUType(obu []byte) int {
	if len(obu) == 0 {
		return -1
	}
	return int(obu[0] >> 3 & 0x0f)
}

// av1OBUParts splits an OBU into its header (one byte, two with the
// extension) and its payload, dropping an obu_size field if it has one.
func av1OBUParts(obu []byte) (hdr, payload []byte, ok bool) {
	if len(obu) < 1 || obu[0]&0x80 != 0 {
		return nil, nil, false
	}
	n := 1
	if obu[0]&0x04 != 0 {
		n = 2
	}
	if len(obu) < n {
		return nil, nil, false
	}
	hdr, rest := obu[:n], obu[n:]
	if obu[0]&0x02 == 0 {
		return hdr, rest, true
	}
	size, l, ok := readLEB128(rest)
	if !ok || size > uint64(len(rest)-l) {
		return nil, nil, false
	}
	return hdr, rest[l : l+int(size)], true
}

// readLEB128 reads an AV1 leb128 (at most 8 bytes, 32 bits of value).
func readLEB128(b []byte) (v uint64, n int, ok bool) {
	for i := 0; i < 8 && i < len(b); i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1, v <= 0xffffffff
		}
	}
	return 0, 0, false
}

func appendLEB128(dst []byte, v uint64) []byte {
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(dst, b)
		}
		dst = append(dst, b|0x80)
	}
}

// AppendAV1OBU appends an OBU in the low-overhead format: its header with
// obu_has_size_field set, its size, its payload. RTP (RFC AV1 payload) sends
// OBUs without sizes; FLV, like ISOBMFF, wants them. False when obu is not
// one OBU.
func AppendAV1OBU(dst, obu []byte) ([]byte, bool) {
	hdr, payload, ok := av1OBUParts(obu)
	if !ok {
		return dst, false
	}
	dst = append(dst, hdr[0]|0x02)
	dst = append(dst, hdr[1:]...)
	dst = appendLEB128(dst, uint64(len(payload)))
	return append(dst, payload...), true
}

// AppendAV1Frame appends an E-RTMP video tag body (CodedFramesX, FourCC
// av01) carrying one temporal unit: its OBUs with sizes, temporal
// delimiters and padding left out (ISOBMFF samples have none; a keyframe's
// sequence header is kept). OBUs that do not parse are left out. It does not
// allocate when dst has room.
func AppendAV1Frame(dst []byte, obus [][]byte, keyframe bool) []byte {
	size := 5
	for _, o := range obus {
		size += len(o) + 9
	}
	dst = grow(dst, size)
	dst = exFrameHeader(dst, FourCCAV1, keyframe, VideoPacketTypeCodedFramesX)
	for _, o := range obus {
		switch AV1OBUType(o) {
		case AV1OBUTemporalDelimiter, AV1OBUPadding, -1:
			continue
		}
		dst, _ = AppendAV1OBU(dst, o)
	}
	return dst
}

// HEVC NAL unit types (H.265 7.4.2.2) the muxer and the pipeline need.
const (
	HEVCNALUVPS     = 32
	HEVCNALUSPS     = 33
	HEVCNALUPPS     = 34
	HEVCNALUAUD     = 35
	HEVCNALUIRAWMin = 16 // BLA_W_LP
	HEVCNALUIRAWMax = 23 // RSV_IRAP_VCL23
)

// HEVCNALUType is the nal_unit_type of an HEVC NAL unit.
func HEVCNALUType(n []byte) int {
	if len(n) < 2 {
		return -1
	}
	return int(n[0] >> 1 & 0x3f)
}

// AppendHEVCNALUs appends an E-RTMP video tag body (FourCC hvc1) carrying
// the NAL units of one access unit with 4-byte lengths: CodedFrames with
// the composition time cts (ms), or CodedFramesX when it is 0. Access unit
// delimiters and parameter sets are left out, as AppendAVCNALUs does: the
// parameter sets travel in the sequence start. It does not allocate when dst
// has room.
func AppendHEVCNALUs(dst []byte, nalus [][]byte, keyframe bool, cts int32) []byte {
	size := 8
	for _, n := range nalus {
		size += 4 + len(n)
	}
	dst = grow(dst, size)
	if cts == 0 {
		dst = exFrameHeader(dst, FourCCHEVC, keyframe, VideoPacketTypeCodedFramesX)
	} else {
		dst = exFrameHeader(dst, FourCCHEVC, keyframe, VideoPacketTypeCodedFrames)
		dst = append(dst, byte(cts>>16), byte(cts>>8), byte(cts))
	}
	for _, n := range nalus {
		switch HEVCNALUType(n) {
		case -1, HEVCNALUVPS, HEVCNALUSPS, HEVCNALUPPS, HEVCNALUAUD:
			continue
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(n)))
		dst = append(dst, n...)
	}
	return dst
}

// ErrInvalidVideoTag is returned by ParseVideoTag for bodies it cannot read.
var ErrInvalidVideoTag = errors.New("invalid FLV video tag")

// VideoTag is a parsed video tag body. Payload aliases the body: for a
// sequence start the configuration record, for frames the coded frame.
type VideoTag struct {
	// Enhanced is set for an E-RTMP tag, whose FourCC names the codec;
	// legacy tags have a CodecID (7 AVC).
	Enhanced   bool
	FrameType  uint8 // 1 key, 2 inter
	CodecID    uint8
	FourCC     [4]byte
	PacketType uint8 // AVCPacketType or VideoPacketType
	// CTS is the composition time offset in ms (AVC, and hvc1 CodedFrames).
	CTS     int32
	Payload []byte
}

// Keyframe tells whether the tag is a key frame.
func (t VideoTag) Keyframe() bool { return t.FrameType == frameTypeKey }

// SequenceStart tells whether the tag carries the codec configuration.
func (t VideoTag) SequenceStart() bool {
	if t.Enhanced {
		return t.PacketType == VideoPacketTypeSequenceStart
	}
	return t.CodecID == codecIDAVC && t.PacketType == avcPacketSequenceHeader
}

// ParseVideoTag reads the header of a video tag body: legacy AVC (and any
// other legacy CodecID, whose payload follows the first byte) and
// single-track E-RTMP without ModEx or metadata. It does not allocate.
func ParseVideoTag(body []byte) (VideoTag, error) {
	if len(body) < 1 {
		return VideoTag{}, fmt.Errorf("video tag: empty body: %w", ErrInvalidVideoTag)
	}
	t := VideoTag{FrameType: body[0] >> 4 & 0x07}
	if body[0]&exVideoHeader == 0 {
		t.CodecID = body[0] & 0x0f
		if t.CodecID != codecIDAVC {
			t.Payload = body[1:]
			return t, nil
		}
		if len(body) < 5 {
			return VideoTag{}, fmt.Errorf("video tag: AVC header truncated: %w", ErrInvalidVideoTag)
		}
		t.PacketType = body[1]
		t.CTS = int32(uint32(body[2])<<24|uint32(body[3])<<16|uint32(body[4])<<8) >> 8
		t.Payload = body[5:]
		return t, nil
	}
	t.Enhanced = true
	t.PacketType = body[0] & 0x0f
	if t.PacketType > VideoPacketTypeCodedFramesX {
		return VideoTag{}, fmt.Errorf("video tag: E-RTMP packet type %d not supported: %w", t.PacketType, ErrInvalidVideoTag)
	}
	if len(body) < 5 {
		return VideoTag{}, fmt.Errorf("video tag: E-RTMP header truncated: %w", ErrInvalidVideoTag)
	}
	copy(t.FourCC[:], body[1:5])
	t.Payload = body[5:]
	if t.PacketType == VideoPacketTypeCodedFrames && (t.FourCC == FourCCHEVC || t.FourCC == [4]byte{'a', 'v', 'c', '1'}) {
		if len(t.Payload) < 3 {
			return VideoTag{}, fmt.Errorf("video tag: composition time truncated: %w", ErrInvalidVideoTag)
		}
		p := t.Payload
		t.CTS = int32(uint32(p[0])<<24|uint32(p[1])<<16|uint32(p[2])<<8) >> 8
		t.Payload = p[3:]
	}
	return t, nil
}
