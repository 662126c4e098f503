package webrtcin

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/sdp/v3"

	"github.com/castbridge/castbridge/gateway/apierr"
)

// TestInspectOfferForCodecs: Chromium offers VP8, H.264, AV1 and VP9; the
// codec taken is the first of the list given that the offer has, and a
// session made for it answers with that codec alone, which is what the
// publisher then sends.
func TestInspectOfferForCodecs(t *testing.T) {
	offer := fixture(t, "chromium.sdp")
	tr, err := Listen(ListenConfig{IPs: []net.IP{net.IPv4(127, 0, 0, 1).To4()}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	for _, c := range []struct {
		list []string
		want string
		mime string
	}{
		{[]string{VideoH264}, VideoH264, "H264"},
		{[]string{VideoAV1, VideoVP9, VideoH264}, VideoAV1, "AV1"},
		{[]string{VideoHEVC, VideoVP9, VideoH264}, VideoVP9, "VP9"},
		{[]string{VideoHEVC, VideoH264}, VideoH264, "H264"},
	} {
		om, err := InspectOfferFor(offer, c.list)
		if err != nil || !om.Video || om.VideoCodec != c.want {
			t.Fatalf("%v: video %v codec %q, %v", c.list, om.Video, om.VideoCodec, err)
		}
		sess, err := tr.NewSessionFor(slog.New(slog.DiscardHandler), om.VideoCodec)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		answer, err := sess.Answer(ctx, om)
		cancel()
		sess.Close()
		if err != nil {
			t.Fatal(err)
		}
		var sd sdp.SessionDescription
		if err := sd.Unmarshal([]byte(answer)); err != nil {
			t.Fatal(err)
		}
		for _, a := range answerSections(&sd) {
			if a.mid != "1" {
				continue
			}
			for _, codec := range a.codecs {
				if !strings.HasPrefix(codec, c.mime) {
					t.Errorf("%v: the answer's video offers %q besides %s", c.list, codec, c.mime)
				}
			}
			if len(a.codecs) == 0 {
				t.Errorf("%v: the answer's video has no codec", c.list)
			}
		}
	}
	// Only HEVC taken: Chromium's offer has none, so its video is rejected
	// with a reason naming the list.
	om, err := InspectOfferFor(offer, []string{VideoHEVC})
	if err != nil || om.Video || len(om.Rejected) != 1 || !strings.Contains(om.Rejected[0].Reason, "(hevc)") {
		t.Fatalf("hevc only: %+v, %v", om, err)
	}
}

// TestVP8OnlyOffers: VP8 has no RTMP mapping. With audio, the video is
// rejected with a reason that says what to send instead; without audio,
// the offer is UNSUPPORTED_CODEC saying the same.
func TestVP8OnlyOffers(t *testing.T) {
	aiortc := fixture(t, "aiortc.sdp")
	i := strings.Index(aiortc, "m=video")
	j := strings.Index(aiortc[i:], "\r\n")
	vp8 := strings.Replace(aiortc, aiortc[i:i+j], "m=video 9 UDP/TLS/RTP/SAVPF 97", 1)
	om, err := InspectOfferFor(vp8, []string{VideoAV1, VideoVP9, VideoH264})
	if err != nil {
		t.Fatal(err)
	}
	if om.Video || len(om.Rejected) != 1 || !strings.Contains(om.Rejected[0].Reason, "prefer H.264, AV1 or VP9") {
		t.Fatalf("%+v", om.Rejected)
	}
	// The publisher itself rejects its audio section: VP8 video alone.
	i = strings.Index(vp8, "m=audio ")
	k := strings.Index(vp8[i+8:], " ")
	_, err = InspectOfferFor(vp8[:i+8]+"0"+vp8[i+8+k:], []string{VideoH264})
	if e := apierr.As(err); e == nil || e.Code != apierr.CodeUnsupportedCodec || !strings.Contains(e.Message, "prefer H.264, AV1 or VP9") {
		t.Fatalf("video-only VP8: %v", err)
	}
}
