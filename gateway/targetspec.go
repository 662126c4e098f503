package gateway

import (
	"fmt"
	"net/url"
	"sort"

	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

// TargetSpec is one RTMP ingest a broadcast pushes to, as the API takes it
// (nanoStream's transcodingTargets).
type TargetSpec struct {
	Output          string
	StreamName      string
	VideoBitrate    int
	AudioBitrate    int
	Framerate       float64
	DropFrames      bool
	H264Passthrough bool
	IcecastAudio    bool
	IcecastURL      string
	ConnectInfo     map[string]any
	AudioCodec      string
}

// AAC bit rates: the default when a target names none, and the range the
// encoder takes for 48 kHz stereo (16 kbit/s per channel up to the largest
// frame a decoder must accept).
const (
	DefaultAudioBitrate = 128000
	MinAudioBitrate     = 32000
	MaxAudioBitrate     = 576000
)

// validate checks the spec and parses its ingest address. Nothing is
// contacted; the errors name the field to fix and never echo a stream key.
func (t *TargetSpec) validate() (rtmppush.Endpoint, error) {
	ep, err := rtmppush.ParseEndpoint(t.Output, t.StreamName)
	if err != nil {
		return ep, &Error{Code: CodeInvalidOutput, Message: fmt.Sprintf(
			"output must be an rtmp:// or rtmps:// URL with a host, an application and a stream name (or give streamname): %v", err), Err: err}
	}
	keys := make([]string, 0, len(t.ConnectInfo))
	for k := range t.ConnectInfo {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch t.ConnectInfo[k].(type) {
		case string, float64, bool:
		default:
			return ep, errorf(CodeInvalidRequest, "rtmpconnectinfo.%s must be a string, number or boolean, not %T", k, t.ConnectInfo[k])
		}
	}
	if t.VideoBitrate < 0 || t.AudioBitrate < 0 || t.Framerate < 0 {
		return ep, errorf(CodeInvalidRequest, "videobitrate, audiobitrate and framerate must not be negative")
	}
	if t.AudioBitrate != 0 && (t.AudioBitrate < MinAudioBitrate || t.AudioBitrate > MaxAudioBitrate) {
		return ep, errorf(CodeInvalidRequest, "audiobitrate %d is outside the AAC encoder's range %d..%d", t.AudioBitrate, MinAudioBitrate, MaxAudioBitrate)
	}
	switch t.AudioCodec {
	case "", "aac", "opus":
	default:
		return ep, errorf(CodeInvalidRequest, "audiocodec must be \"aac\" or \"opus\", not %q", t.AudioCodec)
	}
	if t.IcecastAudio {
		u, err := url.Parse(t.IcecastURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return ep, errorf(CodeInvalidRequest, "icecast_audio needs icecast_url, an http:// or https:// URL of an MP3 or AAC stream")
		}
	}
	return ep, nil
}
