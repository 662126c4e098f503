package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/castbridge/castbridge/gateway"
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
		return &gateway.Error{Code: gateway.CodeInvalidRequest, Message: fmt.Sprintf("flag value %s must be \"0\", \"1\", true or false", b)}
	}
	return nil
}

// targetBody is one entry of transcodingTargets / targets.
type targetBody struct {
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
}

func (t targetBody) spec() (gateway.TargetSpec, error) {
	s := gateway.TargetSpec{
		Output:          t.Output,
		DropFrames:      bool(t.DropFrames),
		H264Passthrough: bool(t.H264Passthrough),
		IcecastAudio:    bool(t.IcecastAudio),
		IcecastURL:      t.IcecastURL,
		AudioCodec:      strings.ToLower(t.AudioCodec),
		AudioBitrate:    gateway.DefaultAudioBitrate,
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
		return s, &gateway.Error{Code: gateway.CodeInvalidOutput, Message: "output is required: an rtmp:// or rtmps:// ingest URL"}
	}
	if len(t.ConnectInfo) > 0 && !bytes.Equal(t.ConnectInfo, []byte("null")) {
		var info map[string]any
		if err := json.Unmarshal(t.ConnectInfo, &info); err != nil {
			return s, &gateway.Error{Code: gateway.CodeInvalidRequest, Message: "rtmpconnectinfo must be a flat object of string, number and boolean values"}
		}
		s.ConnectInfo = info
	}
	return s, nil
}

// broadcastBody accepts nanoStream's startBroadcast config as it is
// ({"transcodingTargets": {...}}, one target or a list) or {"targets": [...]}.
type broadcastBody struct {
	TranscodingTargets json.RawMessage `json:"transcodingTargets"`
	Targets            []targetBody    `json:"targets"`
}

func (b broadcastBody) specs() ([]gateway.TargetSpec, error) {
	var bodies []targetBody
	tt := bytes.TrimSpace(b.TranscodingTargets)
	switch {
	case len(tt) > 0 && tt[0] == '{':
		var one targetBody
		if err := unmarshalTarget(tt, &one); err != nil {
			return nil, err
		}
		bodies = append(bodies, one)
	case len(tt) > 0 && tt[0] == '[':
		if err := unmarshalTarget(tt, &bodies); err != nil {
			return nil, err
		}
	case len(tt) > 0 && !bytes.Equal(tt, []byte("null")):
		return nil, &gateway.Error{Code: gateway.CodeInvalidRequest, Message: "transcodingTargets must be an object or a list of objects"}
	}
	bodies = append(bodies, b.Targets...)
	if len(bodies) == 0 {
		return nil, &gateway.Error{Code: gateway.CodeInvalidRequest, Message: "give the ingests in transcodingTargets or targets"}
	}
	specs := make([]gateway.TargetSpec, len(bodies))
	for i, tb := range bodies {
		s, err := tb.spec()
		if err != nil {
			return nil, err
		}
		specs[i] = s
	}
	return specs, nil
}

func unmarshalTarget(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		var e *gateway.Error
		if errors.As(err, &e) {
			return e
		}
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return &gateway.Error{Code: gateway.CodeInvalidRequest, Message: "target field " + typeErr.Field + " has the wrong type: expected " + typeErr.Type.String()}
		}
		return &gateway.Error{Code: gateway.CodeInvalidRequest, Message: "transcodingTargets: " + err.Error()}
	}
	return nil
}

// ParseTargets reads a broadcast body ({"transcodingTargets": ...} or
// {"targets": [...]}) into target specs, as POST /broadcast does.
func ParseTargets(body []byte) ([]gateway.TargetSpec, error) {
	var bb broadcastBody
	if err := unmarshalTarget(body, &bb); err != nil {
		return nil, err
	}
	return bb.specs()
}
