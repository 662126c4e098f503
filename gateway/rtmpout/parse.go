package rtmpout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/castbridge/castbridge/gateway/apierr"
)

// flag is a nanoStream-style boolean: "0"/"1", "true"/"false", true/false,
// 0/1 or null.
type flag bool

func (f *flag) UnmarshalJSON(b []byte) error {
	switch strings.ToLower(strings.Trim(string(b), `"`)) {
	case "1", "true":
		*f = true
	case "0", "false", "", "null":
		*f = false
	default:
		return &apierr.Error{Code: apierr.CodeInvalidRequest, Message: fmt.Sprintf("flag value %s must be \"0\", \"1\", true or false", b)}
	}
	return nil
}

// Body is one entry of transcodingTargets / targets as JSON carries it:
// numbers may be floats, flags nanoStream-style strings.
type Body struct {
	Output          string          `json:"output"`
	StreamName      *string         `json:"streamname"`
	VideoBitrate    *float64        `json:"videobitrate"`
	AudioBitrate    *float64        `json:"audiobitrate"`
	Framerate       *float64        `json:"framerate"`
	DropFrames      flag            `json:"dropframes"`
	H264Passthrough flag            `json:"h264passthrough"`
	IcecastAudio    flag            `json:"icecast_audio"`
	IcecastURL      string          `json:"icecast_url"`
	ConnectInfo     json.RawMessage `json:"rtmpconnectinfo"`
	AudioCodec      string          `json:"audiocodec"`
	VideoCodec      string          `json:"videocodec"`
}

// Spec reads the body into a spec (not yet validated: see Spec.Validate).
func (t Body) Spec() (Spec, error) {
	s := Spec{
		Output:          t.Output,
		DropFrames:      bool(t.DropFrames),
		H264Passthrough: bool(t.H264Passthrough),
		IcecastAudio:    bool(t.IcecastAudio),
		IcecastURL:      t.IcecastURL,
		AudioCodec:      strings.ToLower(t.AudioCodec),
		VideoCodec:      strings.ToLower(t.VideoCodec),
		AudioBitrate:    DefaultAudioBitrate,
	}
	if t.StreamName != nil {
		s.StreamName = *t.StreamName
	}
	if t.VideoBitrate != nil {
		s.VideoBitrate = int(*t.VideoBitrate)
	}
	if t.AudioBitrate != nil && *t.AudioBitrate != 0 {
		s.AudioBitrate = int(*t.AudioBitrate)
	}
	if t.Framerate != nil {
		s.Framerate = *t.Framerate
	}
	if strings.TrimSpace(t.Output) == "" {
		return s, &apierr.Error{Code: apierr.CodeInvalidOutput, Message: "output is required: an rtmp:// or rtmps:// ingest URL"}
	}
	if len(t.ConnectInfo) > 0 && !bytes.Equal(t.ConnectInfo, []byte("null")) {
		var info map[string]any
		if err := json.Unmarshal(t.ConnectInfo, &info); err != nil {
			return s, &apierr.Error{Code: apierr.CodeInvalidRequest, Message: "rtmpconnectinfo must be a flat object of string, number and boolean values"}
		}
		s.ConnectInfo = info
	}
	return s, nil
}

// BroadcastBody accepts nanoStream's startBroadcast config as it is
// ({"transcodingTargets": {...}}, one target or a list) or {"targets": [...]}.
type BroadcastBody struct {
	TranscodingTargets json.RawMessage `json:"transcodingTargets"`
	Targets            []Body          `json:"targets"`
}

// Specs reads the body's targets into specs (not yet validated).
func (b BroadcastBody) Specs() ([]Spec, error) {
	var bodies []Body
	tt := bytes.TrimSpace(b.TranscodingTargets)
	switch {
	case len(tt) > 0 && tt[0] == '{':
		var one Body
		if err := Unmarshal(tt, &one); err != nil {
			return nil, err
		}
		bodies = append(bodies, one)
	case len(tt) > 0 && tt[0] == '[':
		if err := Unmarshal(tt, &bodies); err != nil {
			return nil, err
		}
	case len(tt) > 0 && !bytes.Equal(tt, []byte("null")):
		return nil, &apierr.Error{Code: apierr.CodeInvalidRequest, Message: "transcodingTargets must be an object or a list of objects"}
	}
	bodies = append(bodies, b.Targets...)
	if len(bodies) == 0 {
		return nil, &apierr.Error{Code: apierr.CodeInvalidRequest, Message: "give the ingests in transcodingTargets or targets"}
	}
	specs := make([]Spec, len(bodies))
	for i, tb := range bodies {
		s, err := tb.Spec()
		if err != nil {
			return nil, err
		}
		specs[i] = s
	}
	return specs, nil
}

// Unmarshal decodes target JSON into v (a Body, []Body or BroadcastBody),
// with errors that name the field at fault.
func Unmarshal(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		var e *apierr.Error
		if errors.As(err, &e) {
			return e
		}
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return &apierr.Error{Code: apierr.CodeInvalidRequest, Message: "target field " + typeErr.Field + " has the wrong type: expected " + typeErr.Type.String()}
		}
		return &apierr.Error{Code: apierr.CodeInvalidRequest, Message: "transcodingTargets: " + err.Error()}
	}
	return nil
}

// ParseBroadcast reads a broadcast body ({"transcodingTargets": ...} or
// {"targets": [...]}) into target specs, as a broadcast start takes them.
func ParseBroadcast(body []byte) ([]Spec, error) {
	var bb BroadcastBody
	if err := Unmarshal(body, &bb); err != nil {
		return nil, err
	}
	return bb.Specs()
}
