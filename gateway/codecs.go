package gateway

import (
	"fmt"
	"strings"

	"github.com/pion/webrtc/v3"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/gateway/rtmpout"
	"github.com/castbridge/castbridge/gateway/webrtcin"
)

// The video codec of a stream is chosen once, when its answer is made
// (the publisher is answered with that codec alone):
//
//   - A stream created with its broadcast takes the codec its targets name
//     (videocodec; a target naming none takes H.264, as it always did).
//     Targets naming different codecs are a VIDEO_CODEC_MISMATCH; when all
//     say auto, the best the publisher offers: AV1, VP9, H.265, H.264.
//   - A preview-first stream takes the first codec of Config.VideoCodecs
//     (--video-codecs, default h264 alone) that the publisher offers.
//
// A target added later (a broadcast started on a preview-first stream,
// AddTarget) that names a codec other than the stream's is refused with
// VIDEO_CODEC_MISMATCH; auto takes whatever the stream has.

// autoVideoOrder is auto's preference: the most efficient codec first.
var autoVideoOrder = []string{webrtcin.VideoAV1, webrtcin.VideoVP9, webrtcin.VideoHEVC, webrtcin.VideoH264}

// ParseVideoCodecs reads --video-codecs: a comma-separated list of h264,
// vp9, av1 and hevc, in order of preference.
func ParseVideoCodecs(s string) ([]string, error) {
	var out []string
	for _, c := range strings.Split(s, ",") {
		c = strings.ToLower(strings.TrimSpace(c))
		switch c {
		case webrtcin.VideoH264, webrtcin.VideoVP9, webrtcin.VideoAV1, webrtcin.VideoHEVC:
		case "":
			continue
		default:
			return nil, fmt.Errorf("video codec %q: castbridge takes h264, vp9, av1 and hevc", c)
		}
		for _, o := range out {
			if o == c {
				return nil, fmt.Errorf("video codec %q listed twice", c)
			}
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no video codec listed")
	}
	return out, nil
}

// videoCodecsFor is the list InspectOfferFor chooses from for a stream
// created with targets (nil: a preview-first stream), and whether the
// targets ask for a video codec of their own (not plain H.264 by default).
func (m *Manager) videoCodecsFor(targets []rtmpout.Spec) ([]string, bool, error) {
	if targets == nil {
		if len(m.cfg.VideoCodecs) == 0 {
			return []string{webrtcin.VideoH264}, false, nil
		}
		return m.cfg.VideoCodecs, false, nil
	}
	want, first := "", -1
	for i := range targets {
		w := targets[i].WantsVideo()
		if w == "" {
			continue
		}
		if want != "" && w != want {
			return nil, false, apierr.Errorf(apierr.CodeVideoCodecMismatch,
				"targets %d and %d ask for different video codecs (%s, %s): a stream has one; give them the same videocodec, or \"auto\"", first, i, want, w)
		}
		if want == "" {
			want, first = w, i
		}
	}
	if want == "" {
		return autoVideoOrder, true, nil
	}
	return []string{want}, want != webrtcin.VideoH264 || hasVideoCodecField(targets), nil
}

func hasVideoCodecField(targets []rtmpout.Spec) bool {
	for _, t := range targets {
		if t.VideoCodec != "" {
			return true
		}
	}
	return false
}

// checkVideoCodecs refuses targets that name a video codec other than the
// stream's.
func (s *Stream) checkVideoCodecs(specs []rtmpout.Spec) error {
	if !s.src.HasVideo() {
		return nil
	}
	have := string(s.streamVideoCodec())
	for i := range specs {
		if w := specs[i].WantsVideo(); w != "" && w != have {
			msg := fmt.Sprintf("the target asks for videocodec %s, but stream %s's publisher was answered with %s", w, s.id, have)
			if len(specs) > 1 {
				msg = fmt.Sprintf("target %d: %s", i, msg)
			}
			return &apierr.Error{Code: apierr.CodeVideoCodecMismatch, StreamID: s.id,
				Message: msg + " (the codec is chosen when the stream is created: create it with its broadcast, or list the codec first in --video-codecs); videocodec \"auto\" takes the stream's"}
		}
	}
	return nil
}

// mimeVideoCodec is the codec of a track's MIME type, "" for none taken.
func mimeVideoCodec(mime string) media.VideoCodec {
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeH264):
		return media.CodecH264
	case strings.EqualFold(mime, webrtc.MimeTypeVP9):
		return media.CodecVP9
	case strings.EqualFold(mime, webrtc.MimeTypeAV1):
		return media.CodecAV1
	case strings.EqualFold(mime, webrtc.MimeTypeH265):
		return media.CodecHEVC
	}
	return ""
}

// streamVideoCodec is the stream's video codec: what a WebRTC publisher's
// answer took, what an RTMP publisher's sequence header says (H.264 before
// one arrived).
func (s *Stream) streamVideoCodec() media.VideoCodec {
	if s.rtmp != nil {
		if ps := s.rtmp.VideoParams(); ps != nil {
			return ps.VideoCodec()
		}
		return media.CodecH264
	}
	return s.videoCodec
}

// checkAudioCodecs refuses targets whose audio an RTMP stream cannot give
// them: its publisher's audio (AAC, or what else it sent) goes to every
// target as it came, and there is nothing to make Opus or take Icecast
// audio from without decoding it. A WebRTC stream takes all of them.
func (s *Stream) checkAudioCodecs(specs []rtmpout.Spec) error {
	if s.rtmp == nil {
		return nil
	}
	for i := range specs {
		what := ""
		switch {
		case specs[i].AudioCodec == rtmpout.AudioOpus:
			what = "audiocodec opus"
		case specs[i].IcecastAudio:
			what = "icecast audio"
		default:
			continue
		}
		msg := fmt.Sprintf("stream %s is an RTMP publish, whose audio goes to every target as the publisher sent it (AAC); %s needs a WebRTC publisher: leave audiocodec out (or aac)", s.id, what)
		if len(specs) > 1 {
			msg = fmt.Sprintf("target %d: %s", i, msg)
		}
		return &apierr.Error{Code: apierr.CodeUnsupportedCodec, StreamID: s.id, Message: msg}
	}
	return nil
}
