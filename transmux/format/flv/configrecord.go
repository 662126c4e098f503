package flv

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/vp9"
)

// ErrInvalidConfig is returned when a codec configuration record cannot be
// built from what the publisher sent.
var ErrInvalidConfig = errors.New("invalid codec configuration")

// maxConfigUnit bounds a parameter set or sequence header that goes into a
// record: real ones are tens of bytes.
const maxConfigUnit = 0xffff

// VideoInfo is what a configuration record's source says of the picture.
type VideoInfo struct {
	Width, Height int
	FPS           float64 // from the bitstream's timing information, 0 when absent
	Profile       string  // codec-specific, e.g. "main 8-bit 4:2:0"
}

// AppendAV1CodecConfigurationRecord appends the AV1CodecConfigurationRecord
// (AV1 in ISOBMFF, 2.3; the E-RTMP av01 sequence start body) built from a
// sequence header OBU (with or without obu_size): the profile, level, tier
// and colour of its first operating point, and the OBU itself with its size
// as configOBUs.
func AppendAV1CodecConfigurationRecord(dst, seqHdrOBU []byte) ([]byte, VideoInfo, error) {
	if AV1OBUType(seqHdrOBU) != AV1OBUSequenceHeader || len(seqHdrOBU) > maxConfigUnit {
		return dst, VideoInfo{}, fmt.Errorf("av1 record: not a sequence header OBU: %w", ErrInvalidConfig)
	}
	hdr, payload, ok := av1OBUParts(seqHdrOBU)
	if !ok || len(hdr) != 1 {
		return dst, VideoInfo{}, fmt.Errorf("av1 record: malformed sequence header OBU: %w", ErrInvalidConfig)
	}
	// mediacommon parses an OBU without the extension byte (a sequence
	// header has none); give it the header without a size field.
	obu := make([]byte, 0, 1+len(payload))
	obu = append(append(obu, hdr[0]&^0x02), payload...)
	var sh av1.SequenceHeader
	if err := sh.Unmarshal(obu); err != nil {
		return dst, VideoInfo{}, fmt.Errorf("av1 record: parse sequence header: %w: %w", ErrInvalidConfig, err)
	}
	var level uint8
	var tier bool
	if len(sh.SeqLevelIdx) > 0 {
		level = sh.SeqLevelIdx[0]
	}
	if len(sh.SeqTier) > 0 {
		tier = sh.SeqTier[0]
	}
	cc := sh.ColorConfig
	b2 := bit(tier)<<7 | bit(cc.HighBitDepth)<<6 | bit(cc.TwelveBit)<<5 | bit(cc.MonoChrome)<<4 |
		bit(cc.SubsamplingX)<<3 | bit(cc.SubsamplingY)<<2 | byte(cc.ChromaSamplePosition)&0x03
	dst = append(dst,
		0x81, // marker 1, version 1
		sh.SeqProfile<<5|level&0x1f,
		b2,
		0, // no initial_presentation_delay
	)
	dst, _ = AppendAV1OBU(dst, seqHdrOBU)
	depth := 8
	if cc.HighBitDepth {
		depth = 10
		if cc.TwelveBit {
			depth = 12
		}
	}
	info := VideoInfo{Width: sh.Width(), Height: sh.Height(), Profile: fmt.Sprintf("profile %d level %d %d-bit", sh.SeqProfile, level, depth)}
	if ti := sh.TimingInfo; ti != nil && ti.NumUnitsInDisplayTick > 0 {
		info.FPS = float64(ti.TimeScale) / float64(ti.NumUnitsInDisplayTick)
	}
	return dst, info, nil
}

func bit(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// vp9Levels are the VP9 levels (VP9 codec levels, webmproject) by their
// largest picture in luma samples: the record's level from the frame size.
var vp9Levels = []struct {
	level   uint8
	samples int
}{
	{10, 36864}, {11, 73728}, {20, 122880}, {21, 245760}, {30, 552960}, {31, 983040},
	{40, 2228224}, {50, 8912896}, {60, 35651584},
}

// AppendVPCodecConfigurationRecord appends the VPCodecConfigurationRecord
// (VP Codec ISO Media File Format Binding, 2.2, vpcC as a version 1 full
// box's payload: version and flags first, as FFmpeg's muxer and MediaMTX's
// reader have it; the E-RTMP vp09 sequence start body) built from a VP9 key
// frame's uncompressed header: profile, bit depth, chroma subsampling,
// range and colour space; the level from the picture size.
func AppendVPCodecConfigurationRecord(dst, keyframe []byte) ([]byte, VideoInfo, error) {
	var h vp9.Header
	if err := h.Unmarshal(keyframe); err != nil {
		return dst, VideoInfo{}, fmt.Errorf("vp9 record: parse frame header: %w: %w", ErrInvalidConfig, err)
	}
	if h.NonKeyFrame || h.ColorConfig == nil || h.FrameSize == nil {
		return dst, VideoInfo{}, fmt.Errorf("vp9 record: not a key frame: %w", ErrInvalidConfig)
	}
	w, ht := h.Width(), h.Height()
	level := uint8(62)
	for _, l := range vp9Levels {
		if w*ht <= l.samples {
			level = l.level
			break
		}
	}
	cc := h.ColorConfig
	var chroma uint8 // 1 is 4:2:0 co-sited with luma, what FFmpeg writes for libvpx
	switch {
	case cc.SubsamplingX && cc.SubsamplingY:
		chroma = 1
	case cc.SubsamplingX:
		chroma = 2 // 4:2:2
	default:
		chroma = 3 // 4:4:4
	}
	// VP9 color_space to ISO/IEC 23091-4 (CICP) colour primaries,
	// transfer characteristics and matrix coefficients; 2 is unspecified.
	prim, trc, mtx := uint8(2), uint8(2), uint8(2)
	switch cc.ColorSpace {
	case 1: // BT.601
		prim, trc, mtx = 6, 6, 6
	case 2: // BT.709
		prim, trc, mtx = 1, 1, 1
	case 3: // SMPTE 170
		prim, trc, mtx = 6, 6, 6
	case 4: // SMPTE 240
		prim, trc, mtx = 7, 7, 7
	case 5: // BT.2020
		prim, trc, mtx = 9, 14, 9
	case 7: // sRGB
		prim, trc, mtx = 1, 13, 0
	}
	dst = append(dst,
		1, 0, 0, 0, // version 1, flags
		h.Profile,
		level,
		cc.BitDepth<<4|chroma<<1|bit(cc.ColorRange),
		prim, trc, mtx,
		0, 0, // codecIntializationDataSize: none for VP9
	)
	sub := map[uint8]string{1: "4:2:0", 2: "4:2:2", 3: "4:4:4"}[chroma]
	return dst, VideoInfo{Width: w, Height: ht, Profile: fmt.Sprintf("profile %d %d-bit %s", h.Profile, cc.BitDepth, sub)}, nil
}

// AppendHEVCDecoderConfigurationRecord appends the
// HEVCDecoderConfigurationRecord (ISO/IEC 14496-15, 8.3.3.1; the E-RTMP
// hvc1 sequence start body) holding vps, sps and pps, with 4-byte NAL unit
// lengths (what AppendHEVCNALUs writes). The profile, tier, level and
// constraint flags are the SPS's general_profile_tier_level bytes; chroma
// format and bit depths come from the parsed SPS.
func AppendHEVCDecoderConfigurationRecord(dst, vps, sps, pps []byte) ([]byte, VideoInfo, error) {
	for _, c := range []struct {
		nalu []byte
		typ  int
		name string
	}{{vps, HEVCNALUVPS, "VPS"}, {sps, HEVCNALUSPS, "SPS"}, {pps, HEVCNALUPPS, "PPS"}} {
		if HEVCNALUType(c.nalu) != c.typ || len(c.nalu) > maxConfigUnit {
			return dst, VideoInfo{}, fmt.Errorf("hevc record: %s: %w", c.name, ErrInvalidConfig)
		}
	}
	var s h265.SPS
	if err := s.Unmarshal(sps); err != nil {
		return dst, VideoInfo{}, fmt.Errorf("hevc record: parse SPS: %w: %w", ErrInvalidConfig, err)
	}
	// The RBSP after the two-byte NAL header: one byte of VPS id, max sub
	// layers and nesting, then the 12 bytes of the general profile, tier
	// and level, byte-aligned.
	rbsp := h264.EmulationPreventionRemove(sps[2:])
	if len(rbsp) < 13 {
		return dst, VideoInfo{}, fmt.Errorf("hevc record: SPS too short: %w", ErrInvalidConfig)
	}
	ptl := rbsp[1:13]
	dst = append(dst, 1)      // configurationVersion
	dst = append(dst, ptl...) // profile space, tier, idc; 4 compatibility, 6 constraint bytes; level
	dst = append(dst,
		0xf0, 0x00, // reserved, min_spatial_segmentation_idc 0
		0xfc,                                   // reserved, parallelismType 0 (unknown)
		0xfc|byte(s.ChromaFormatIdc&0x03),      // reserved, chromaFormat
		0xf8|byte(s.BitDepthLumaMinus8&0x07),   // reserved, bitDepthLumaMinus8
		0xf8|byte(s.BitDepthChromaMinus8&0x07), // reserved, bitDepthChromaMinus8
		0, 0,                                   // avgFrameRate unknown
		(s.MaxSubLayersMinus1+1)&0x07<<3|bit(s.TemporalIDNestingFlag)<<2|3, // constantFrameRate 0, numTemporalLayers, temporalIdNested, lengthSizeMinusOne 3
		3, // numOfArrays
	)
	for _, n := range [][]byte{vps, sps, pps} {
		dst = append(dst, 0x80|byte(HEVCNALUType(n))) // array_completeness 1
		dst = binary.BigEndian.AppendUint16(dst, 1)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(n)))
		dst = append(dst, n...)
	}
	profile := map[uint8]string{1: "main", 2: "main 10", 3: "main still picture", 4: "range extensions"}[s.ProfileTierLevel.GeneralProfileIdc]
	if profile == "" {
		profile = fmt.Sprintf("profile %d", s.ProfileTierLevel.GeneralProfileIdc)
	}
	info := VideoInfo{Width: s.Width(), Height: s.Height(), FPS: s.FPS(),
		Profile: fmt.Sprintf("%s level %.1f", profile, float64(s.ProfileTierLevel.GeneralLevelIdc)/30)}
	return dst, info, nil
}
