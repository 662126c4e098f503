package gateway

import (
	"slices"
	"testing"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/gateway/rtmpout"
	"github.com/castbridge/castbridge/gateway/video"
)

func TestParseVideoCodecs(t *testing.T) {
	if got, err := ParseVideoCodecs(" AV1, vp9 ,h264"); err != nil || !slices.Equal(got, []string{"av1", "vp9", "h264"}) {
		t.Fatalf("%v, %v", got, err)
	}
	for _, bad := range []string{"", "vp8", "h264,h264", ","} {
		if _, err := ParseVideoCodecs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestVideoCodecsFor(t *testing.T) {
	m := &Manager{cfg: Config{VideoCodecs: []string{"vp9", "h264"}}}
	spec := func(c string) rtmpout.Spec { return rtmpout.Spec{Output: "rtmp://h/a/k", VideoCodec: c} }
	for _, c := range []struct {
		targets []rtmpout.Spec
		want    []string
		own     bool
		code    apierr.Code
	}{
		{nil, []string{"vp9", "h264"}, false, ""},                              // preview first: --video-codecs
		{[]rtmpout.Spec{spec(""), spec("")}, []string{"h264"}, false, ""},      // as before
		{[]rtmpout.Spec{spec("vp9"), spec("auto")}, []string{"vp9"}, true, ""}, // auto follows
		{[]rtmpout.Spec{spec("auto")}, []string{"av1", "vp9", "hevc", "h264"}, true, ""},
		{[]rtmpout.Spec{spec("h264"), spec("auto")}, []string{"h264"}, true, ""},
		{[]rtmpout.Spec{spec(""), spec("av1")}, nil, false, apierr.CodeVideoCodecMismatch}, // "" is h264
		{[]rtmpout.Spec{spec("hevc"), spec("vp9")}, nil, false, apierr.CodeVideoCodecMismatch},
	} {
		got, own, err := m.videoCodecsFor(c.targets)
		if c.code != "" {
			if e := apierr.As(err); e == nil || e.Code != c.code {
				t.Errorf("%+v: %v", c.targets, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) || own != c.own {
			t.Errorf("%+v: %v %v %v", c.targets, got, own, err)
		}
	}
}

func TestCheckVideoCodecs(t *testing.T) {
	s := &Stream{id: "st_x", video: video.New(video.Config{}), videoCodec: media.CodecVP9}
	s.src = webrtcSource{s}
	spec := func(c string) rtmpout.Spec { return rtmpout.Spec{Output: "rtmp://h/a/k", VideoCodec: c} }
	if err := s.checkVideoCodecs([]rtmpout.Spec{spec("vp9"), spec("auto")}); err != nil {
		t.Fatal(err)
	}
	err := s.checkVideoCodecs([]rtmpout.Spec{spec("auto"), spec("")})
	if e := apierr.As(err); e == nil || e.Code != apierr.CodeVideoCodecMismatch || e.Message == "" {
		t.Fatalf("a default (h264) target on a VP9 stream: %v", err)
	}
	// An audio-only stream has no video codec to disagree with.
	audioOnly := &Stream{id: "st_y"}
	audioOnly.src = webrtcSource{audioOnly}
	if err := audioOnly.checkVideoCodecs([]rtmpout.Spec{spec("av1")}); err != nil {
		t.Fatal(err)
	}
}
