package media

import (
	"bytes"
	"encoding/hex"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/castbridge/castbridge/transmux/format/flv"
)

// ParamSet is an immutable H.264 SPS/PPS pair with what is derived from it.
// A new one is made only when the publisher's parameter sets change, so
// outputs compare pointers to know when to send a new sequence header.
type ParamSet struct {
	SPS, PPS  []byte
	SeqHeader []byte // FLV AVC sequence header body
	Width     int
	Height    int
	SPSFPS    float64 // from the SPS's VUI timing, 0 when absent
	Profile   string  // profile-level-id, e.g. "42e01f"
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
