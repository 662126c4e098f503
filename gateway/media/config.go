package media

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/castbridge/castbridge/transmux/format/flv"
)

// VideoCodec names a video codec the way target specs and the API do.
type VideoCodec string

// The video codecs castbridge passes through: H.264 in legacy FLV, the
// others over Enhanced RTMP.
const (
	CodecH264 VideoCodec = "h264"
	CodecVP9  VideoCodec = "vp9"
	CodecAV1  VideoCodec = "av1"
	CodecHEVC VideoCodec = "hevc"
)

// DisplayName is the codec as the stream view shows it.
func (c VideoCodec) DisplayName() string {
	switch c {
	case CodecVP9:
		return "VP9"
	case CodecAV1:
		return "AV1"
	case CodecHEVC:
		return "H265"
	}
	return "H264"
}

// ParamSet is an immutable video configuration with what is derived from
// it: an H.264 SPS/PPS pair, or the configuration record of an E-RTMP codec.
// A new one is made only when the publisher's configuration changes, so
// outputs compare pointers to know when to send a new sequence header.
type ParamSet struct {
	Codec     VideoCodec // "" is H.264 (NewParamSet)
	FourCC    [4]byte    // E-RTMP codecs; zero for H.264 in legacy FLV
	SPS, PPS  []byte     // H.264; H.265 with VPS
	VPS       []byte
	Source    []byte // VP9: the record; AV1: the sequence header OBU
	SeqHeader []byte // FLV AVC sequence header body, or E-RTMP sequence start
	Width     int
	Height    int
	SPSFPS    float64 // from the bitstream's timing information, 0 when absent
	Profile   string  // H.264 profile-level-id, e.g. "42e01f"; others described
}

// VideoCodec is the parameter set's codec.
func (ps *ParamSet) VideoCodec() VideoCodec {
	if ps.Codec == "" {
		return CodecH264
	}
	return ps.Codec
}

// NewVP9ParamSet builds the vp09 sequence start from a VP9 key frame.
func NewVP9ParamSet(keyframe []byte) (*ParamSet, error) {
	rec, info, err := flv.AppendVPCodecConfigurationRecord(nil, keyframe)
	if err != nil {
		return nil, err
	}
	return exParamSet(CodecVP9, flv.FourCCVP9, rec, info, &ParamSet{Source: rec}), nil
}

// NewAV1ParamSet builds the av01 sequence start from a sequence header OBU.
func NewAV1ParamSet(seqHdrOBU []byte) (*ParamSet, error) {
	rec, info, err := flv.AppendAV1CodecConfigurationRecord(nil, seqHdrOBU)
	if err != nil {
		return nil, err
	}
	return exParamSet(CodecAV1, flv.FourCCAV1, rec, info, &ParamSet{Source: bytes.Clone(seqHdrOBU)}), nil
}

// NewHEVCParamSet builds the hvc1 sequence start from VPS, SPS and PPS.
func NewHEVCParamSet(vps, sps, pps []byte) (*ParamSet, error) {
	rec, info, err := flv.AppendHEVCDecoderConfigurationRecord(nil, vps, sps, pps)
	if err != nil {
		return nil, err
	}
	return exParamSet(CodecHEVC, flv.FourCCHEVC, rec, info,
		&ParamSet{VPS: bytes.Clone(vps), SPS: bytes.Clone(sps), PPS: bytes.Clone(pps)}), nil
}

func exParamSet(c VideoCodec, fourCC [4]byte, rec []byte, info flv.VideoInfo, ps *ParamSet) *ParamSet {
	ps.Codec, ps.FourCC = c, fourCC
	ps.SeqHeader = flv.AppendExVideoSequenceStart(nil, fourCC, rec)
	ps.Width, ps.Height, ps.SPSFPS, ps.Profile = info.Width, info.Height, info.FPS, info.Profile
	return ps
}

// NewParamSet parses the SPS and builds the sequence header.
func NewParamSet(sps, pps []byte) (*ParamSet, error) {
	var parsed h264.SPS
	if err := parsed.Unmarshal(sps); err != nil {
		return nil, err
	}
	ps := &ParamSet{
		SPS:    bytes.Clone(sps),
		PPS:    bytes.Clone(pps),
		Width:  parsed.Width(),
		Height: parsed.Height(),
		SPSFPS: parsed.FPS(),
	}
	if len(sps) >= 4 {
		ps.Profile = hex.EncodeToString(sps[1:4])
	}
	hdr, err := flv.AppendAVCSequenceHeader(nil, ps.SPS, ps.PPS)
	if err != nil {
		return nil, err
	}
	ps.SeqHeader = hdr
	return ps, nil
}

// AudioHeader is the sequence header an audio track needs on every
// connection before its first frame (AAC AudioSpecificConfig, E-RTMP Opus
// sequence start), immutable and shared by frames like ParamSet. A nil Body
// (MP3) needs none.
type AudioHeader struct{ Body []byte }

// ParamSetFromSequenceHeader keeps an RTMP publisher's own sequence header
// (the body of a legacy AVC sequence header or of an E-RTMP sequence
// start, tag being its parse), as an RTMP source passes it on: SeqHeader
// is the body byte for byte, so every SPS, PPS and extension the encoder
// put in it reaches the targets. The picture size and profile come from
// the first SPS of an AVC record; for the E-RTMP codecs they are left 0
// (the publisher's onMetaData says them).
func ParamSetFromSequenceHeader(body []byte, tag flv.VideoTag) (*ParamSet, error) {
	ps := &ParamSet{SeqHeader: bytes.Clone(body)}
	if tag.Enhanced {
		switch tag.FourCC {
		case flv.FourCCHEVC:
			ps.Codec = CodecHEVC
		case flv.FourCCAV1:
			ps.Codec = CodecAV1
		case flv.FourCCVP9:
			ps.Codec = CodecVP9
		default:
			return nil, fmt.Errorf("sequence start of FourCC %q: not a codec castbridge passes on", tag.FourCC[:])
		}
		ps.FourCC = tag.FourCC
		ps.Profile = ps.Codec.DisplayName()
		return ps, nil
	}
	sps, pps, err := avcRecordFirst(tag.Payload)
	if err != nil {
		return nil, err
	}
	if sps[0]&0x1f != 7 {
		return nil, errors.New("AVC sequence header: its first SPS is not an SPS NAL unit")
	}
	var parsed h264.SPS
	if err := parsed.Unmarshal(sps); err != nil {
		return nil, fmt.Errorf("AVC sequence header's SPS: %w", err)
	}
	// The parser takes some nonsense (found by fuzzing): a picture size
	// no encoder makes is no SPS.
	if w, h := parsed.Width(), parsed.Height(); w <= 0 || h <= 0 || w > 16384 || h > 16384 {
		return nil, fmt.Errorf("AVC sequence header's SPS: picture size %dx%d", w, h)
	}
	ps.SPS, ps.PPS = bytes.Clone(sps), bytes.Clone(pps)
	ps.Width, ps.Height, ps.SPSFPS = parsed.Width(), parsed.Height(), parsed.FPS()
	ps.Profile = hex.EncodeToString(sps[1:4])
	return ps, nil
}

// avcRecordFirst reads the first SPS and PPS of an
// AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1), bounded by rec.
func avcRecordFirst(rec []byte) (sps, pps []byte, err error) {
	bad := errors.New("AVC sequence header: truncated or malformed configuration record")
	if len(rec) < 6 || rec[0] != 1 {
		return nil, nil, bad
	}
	n := int(rec[5] & 0x1f)
	p := rec[6:]
	for i := 0; i < n; i++ {
		if len(p) < 2 {
			return nil, nil, bad
		}
		l := int(binary.BigEndian.Uint16(p))
		if len(p) < 2+l || l < 4 {
			return nil, nil, bad
		}
		if i == 0 {
			sps = p[2 : 2+l]
		}
		p = p[2+l:]
	}
	if sps == nil || len(p) < 1 {
		return nil, nil, bad
	}
	if m := int(p[0]); m > 0 {
		p = p[1:]
		if len(p) < 2 {
			return nil, nil, bad
		}
		l := int(binary.BigEndian.Uint16(p))
		if len(p) < 2+l {
			return nil, nil, bad
		}
		pps = p[2 : 2+l]
	}
	return sps, pps, nil
}
