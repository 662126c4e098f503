package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/transmux/format/flv"
)

// TestRejectedTrackLive: a publisher (pion) offering VP8 video and Opus
// audio gets an answer that rejects the video (port 0) and takes the
// audio; the create response, the stream view and the WHIP headers say
// which track was rejected and why, and the ingest gets the audio as AAC.
func TestRejectedTrackLive(t *testing.T) {
	parallel(t, light)
	for _, path := range []string{"v1", "whip"} {
		t.Run(path, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pub, err := gatewaytest.NewPublisher(gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"), OfferCodec: "VP8", Loop: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = pub.Close() })
			offer, err := pub.Offer(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var v offerView
			switch path {
			case "v1":
				if st, raw := h.call("POST", "/v1/streams", map[string]any{"sdp": offer}, &v); st != http.StatusCreated {
					t.Fatalf("create: %d %s", st, raw)
				}
				checkRejectedVP8(t, "create response", v)
			case "whip":
				req, _ := http.NewRequest("POST", h.srv.URL+"/whip", strings.NewReader(offer))
				req.Header.Set("Content-Type", "application/sdp")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				answer, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					t.Fatalf("WHIP: %d %s", resp.StatusCode, answer)
				}
				hdr := resp.Header.Values("X-Castbridge-Rejected-Track")
				if len(hdr) != 1 || !strings.HasPrefix(hdr[0], `mid="0"; kind=video; reason="no H.264`) || !strings.Contains(hdr[0], "(offered: VP8)") {
					t.Errorf("WHIP rejected-track headers %q", hdr)
				}
				v.ID, v.SDP = strings.TrimPrefix(resp.Header.Get("Location"), "/whip/"), string(answer)
			}
			if !strings.Contains(v.SDP, "m=video 0 ") {
				t.Errorf("answer does not reject the video with port 0:\n%s", v.SDP)
			}
			if err := pub.SetAnswer(v.SDP); err != nil {
				t.Fatal(err)
			}
			pub.Start(ctx)
			h.waitState(v.ID, "connected", 10*time.Second)
			h.startTargets(v.ID, map[string]any{"output": h.ingestURL() + "/rejected"})
			time.Sleep(2 * time.Second)
			h.call("GET", "/v1/streams/"+v.ID, nil, &v)
			checkRejectedVP8(t, "stream view", v)
			if v.Video != nil || v.Audio == nil || v.Audio.Codec != "opus" {
				t.Errorf("view video %+v audio %+v, want no video and opus", v.Video, v.Audio)
			}
			_, msgs := h.rec.get("rejected")
			var aac, video int
			for _, m := range msgs {
				switch {
				case m.msg.Type == flv.TagVideo:
					video++
				case m.msg.Type == flv.TagAudio && len(m.msg.Body) > 1 && m.msg.Body[0]>>4 == 10 && m.msg.Body[1] == 1:
					aac++
				}
			}
			if video != 0 || aac < 40 {
				t.Errorf("ingest got %d video tags and %d AAC frames in 2 s, want none and >= 40", video, aac)
			}
			h.closeStream(v.ID)
		})
	}
}

func checkRejectedVP8(t *testing.T, where string, v offerView) {
	t.Helper()
	if len(v.Rejected) != 1 || v.Rejected[0].MID != "0" || v.Rejected[0].Kind != "video" || !strings.Contains(v.Rejected[0].Reason, "(offered: VP8)") {
		t.Errorf("%s: rejected %+v, want mid 0 video, VP8 only", where, v.Rejected)
	}
	// API.md: the view's warnings say it too.
	if len(v.Warnings) != 1 || !strings.Contains(v.Warnings[0], "video track (mid 0) was rejected") || !strings.Contains(v.Warnings[0], "VP8") {
		t.Errorf("%s: warnings %q, want one naming the rejected VP8 video", where, v.Warnings)
	}
}
