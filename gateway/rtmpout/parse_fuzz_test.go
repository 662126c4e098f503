package rtmpout

import (
	"errors"
	"strings"
	"testing"

	"github.com/castbridge/castbridge/gateway/apierr"
)

// FuzzParseBroadcast: any broadcast body is refused with INVALID_REQUEST
// or INVALID_OUTPUT and a message, or read into at least one spec; a spec
// that validates has an endpoint whose redacted form does not carry a
// stream name given apart from the output, and one that does not is
// refused the same way, without the stream name in the message.
func FuzzParseBroadcast(f *testing.F) {
	for _, s := range []string{
		`{"transcodingTargets":{"output":"rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl","videobitrate":2500000,"audiobitrate":128000,"framerate":30,"dropframes":"1"}}`,
		`{"transcodingTargets":[{"output":"rtmps://live-api-s.facebook.com:443/rtmp/","streamname":"FB-123456789?s_bl=1","rtmpconnectinfo":{"flashVer":"FMLE/3.0","n":1,"b":true}},{"output":"rtmp://127.0.0.1/live","streamname":"second-key","audiocodec":"OPUS"}]}`,
		`{"targets":[{"output":"rtmp://[::1]:1935/app/key","h264passthrough":true,"icecast_audio":"true","icecast_url":"http://radio.example/stream.mp3"}]}`,
		`{"transcodingTargets":null,"targets":[{"output":"rtmp://host/app/key","dropframes":0,"audiobitrate":1.5e9}]}`,
		`{"transcodingTargets":"rtmp://host/app/key"}`,
		`{"targets":[{"output":""}]}`,
		`{"targets":[{"output":"rtmp://host/app/key","videocodec":"VP9"},{"output":"rtmp://host/app/k2","videocodec":"auto"}]}`,
		`{"targets":[{"output":"rtmp://host/app/key","videocodec":"vp8"}]}`,
		`{"targets":[{"output":"rtmp://host/app/key","videocodec":"hevc","h264passthrough":true}]}`,
		`{"transcodingTargets":{"output":"rtmp://host/app/key","rtmpconnectinfo":{"nested":{"a":1}}}}`,
		`[`,
	} {
		f.Add([]byte(s))
	}
	refused := func(t *testing.T, err error, key string) {
		t.Helper()
		var e *apierr.Error
		if !errors.As(err, &e) || (e.Code != apierr.CodeInvalidRequest && e.Code != apierr.CodeInvalidOutput && e.Code != apierr.CodeOutputNotAllowed) || e.Message == "" {
			t.Fatalf("refused with %#v", err)
		}
		if key != "" && strings.Contains(e.Message, key) {
			t.Fatalf("the error echoes the stream name %q: %s", key, e.Message)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		specs, err := ParseBroadcast(body)
		if err != nil {
			refused(t, err, "")
			return
		}
		if len(specs) == 0 {
			t.Fatal("no specs and no error")
		}
		for i := range specs {
			s := &specs[i]
			// A stream name given apart from the output, long enough not
			// to turn up in the rest of the URL by chance.
			key := ""
			if len(s.StreamName) >= 8 && !strings.Contains(s.Output, s.StreamName) {
				key = s.StreamName
			}
			ep, err := s.Validate()
			if err != nil {
				refused(t, err, key)
				continue
			}
			switch s.VideoCodec {
			case "", VideoH264, VideoVP9, VideoAV1, VideoHEVC, VideoAuto:
			default:
				t.Fatalf("videocodec %q validated", s.VideoCodec)
			}
			red := ep.Redacted()
			if red == "" || key != "" && strings.Contains(red, key) {
				t.Fatalf("endpoint of %+v redacted as %q", *s, red)
			}
		}
	})
}
