package rtmpout

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/outpolicy"
	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

// Spec is one RTMP ingest a broadcast pushes to, as the API takes it
// (nanoStream's transcodingTargets).
type Spec struct {
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
	// VideoCodec is the codec the target takes: "" or VideoH264 (legacy
	// FLV), VideoVP9, VideoAV1, VideoHEVC (Enhanced RTMP), or VideoAuto,
	// the best the publisher offers that every target of the broadcast
	// takes (decided when the answer is made).
	VideoCodec string
}

// Video codecs a target may ask for (media.VideoCodec names, and auto).
const (
	VideoH264 = "h264"
	VideoVP9  = "vp9"
	VideoAV1  = "av1"
	VideoHEVC = "hevc"
	VideoAuto = "auto"
)

// WantsVideo is the codec the target insists on, "" for auto. Targets
// that name none take H.264, as they always did.
func (t *Spec) WantsVideo() string {
	switch t.VideoCodec {
	case "":
		return VideoH264
	case VideoAuto:
		return ""
	}
	return t.VideoCodec
}

// AAC bit rates: the default when a target names none, and the range the
// encoder takes for 48 kHz stereo (16 kbit/s per channel up to the largest
// frame a decoder must accept).
const (
	DefaultAudioBitrate = 128000
	MinAudioBitrate     = 32000
	MaxAudioBitrate     = 576000
)

// Audio codecs a target may ask for.
const (
	AudioAAC  = "aac"
	AudioOpus = "opus"
)

// Validate checks the spec against the default output policy; see
// ValidateFor.
func (t *Spec) Validate() (rtmppush.Endpoint, error) { return t.ValidateFor(nil) }

// ValidateFor checks the spec and parses its ingest address. Nothing is
// contacted: hosts written as IP addresses (and localhost) are checked
// against the output policy p here, host names when they are dialed. The
// errors name the field to fix and never echo a stream key or a URL's path.
func (t *Spec) ValidateFor(p *outpolicy.Policy) (rtmppush.Endpoint, error) {
	ep, err := rtmppush.ParseEndpoint(t.Output, t.StreamName)
	if err != nil {
		return ep, apierr.Wrap(apierr.CodeInvalidOutput, err,
			"output must be an rtmp:// or rtmps:// URL with a host, an application and a stream name (or give streamname): %v", err)
	}
	if err := p.CheckLiteral(ep.Hostname(), ep.Port()); err != nil {
		return ep, apierr.Wrap(policyCode(err), err, "output %s", err)
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
			return ep, apierr.Errorf(apierr.CodeInvalidRequest, "rtmpconnectinfo.%s must be a string, number or boolean, not %T", k, t.ConnectInfo[k])
		}
	}
	if t.VideoBitrate < 0 || t.AudioBitrate < 0 || t.Framerate < 0 {
		return ep, apierr.Errorf(apierr.CodeInvalidRequest, "videobitrate, audiobitrate and framerate must not be negative")
	}
	if t.AudioBitrate != 0 && (t.AudioBitrate < MinAudioBitrate || t.AudioBitrate > MaxAudioBitrate) {
		return ep, apierr.Errorf(apierr.CodeInvalidRequest, "audiobitrate %d is outside the AAC encoder's range %d..%d", t.AudioBitrate, MinAudioBitrate, MaxAudioBitrate)
	}
	switch t.AudioCodec {
	case "", AudioAAC, AudioOpus:
	default:
		return ep, apierr.Errorf(apierr.CodeInvalidRequest, "audiocodec must be \"aac\" or \"opus\", not %q", t.AudioCodec)
	}
	switch t.VideoCodec {
	case "", VideoH264, VideoVP9, VideoAV1, VideoHEVC, VideoAuto:
	default:
		return ep, apierr.Errorf(apierr.CodeInvalidRequest, "videocodec must be \"h264\", \"vp9\", \"av1\", \"hevc\" or \"auto\", not %q", truncateValue(t.VideoCodec))
	}
	if t.H264Passthrough && t.VideoCodec != "" && t.VideoCodec != VideoH264 && t.VideoCodec != VideoAuto {
		return ep, apierr.Errorf(apierr.CodeInvalidRequest, "h264passthrough and videocodec %q contradict each other", t.VideoCodec)
	}
	if t.IcecastAudio {
		u, err := url.Parse(t.IcecastURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return ep, apierr.Errorf(apierr.CodeInvalidRequest, "icecast_audio needs icecast_url, an http:// or https:// URL of an MP3 or AAC stream")
		}
		if err := p.CheckURL(u); err != nil {
			return ep, apierr.Wrap(policyCode(err), err, "icecast_url %s", err)
		}
	}
	return ep, nil
}

// truncateValue bounds a client's value echoed in a message.
func truncateValue(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// policyCode is the API's code for an output the policy refuses:
// FORBIDDEN when the caller's scope does not cover the host, else
// OUTPUT_NOT_ALLOWED; INVALID_OUTPUT for what is no policy's refusal.
func policyCode(err error) apierr.Code {
	var denied *outpolicy.DeniedError
	switch {
	case !errors.As(err, &denied):
		return apierr.CodeInvalidOutput
	case denied.OutsideScope():
		return apierr.CodeForbidden
	}
	return apierr.CodeOutputNotAllowed
}

// ValidateAll checks every target of a broadcast against the default
// output policy without contacting any.
func ValidateAll(specs []Spec) error { return ValidateAllFor(specs, nil) }

// ValidateAllFor checks every target of a broadcast against the output
// policy p without contacting any.
func ValidateAllFor(specs []Spec, p *outpolicy.Policy) error {
	if len(specs) == 0 {
		return apierr.Errorf(apierr.CodeInvalidRequest, "a broadcast needs at least one target")
	}
	for i := range specs {
		if _, err := specs[i].ValidateFor(p); err != nil {
			var e *apierr.Error
			if len(specs) > 1 && errors.As(err, &e) {
				e.Message = fmt.Sprintf("target %d: %s", i, e.Message)
			}
			return err
		}
	}
	return nil
}

// MinVideoBitrate is the lowest videobitrate any of specs asks for, 0 for none.
func MinVideoBitrate(specs []Spec) int {
	low := 0
	for _, t := range specs {
		if t.VideoBitrate > 0 && (low == 0 || t.VideoBitrate < low) {
			low = t.VideoBitrate
		}
	}
	return low
}
