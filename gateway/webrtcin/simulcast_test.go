package webrtcin

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// TestAnswerNegotiatesSimulcast answers a Chromium offer with three
// sendEncodings (rids q, h, f): the answer must take the simulcast and the
// RID header extensions with it, or the browser's setRemoteDescription fails
// ("negotiates simulcast but does not negotiate the RID RTP header
// extension").
func TestAnswerNegotiatesSimulcast(t *testing.T) {
	raw, err := os.ReadFile("testdata/chromium-simulcast.sdp")
	if err != nil {
		t.Fatal(err)
	}
	tp := listenLoopback(t, ListenConfig{})
	sess, err := tp.NewSession(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	om, err := InspectOffer(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	if !om.Video || len(om.Rejected) != 0 {
		t.Fatalf("inspected offer: video %v, rejected %+v", om.Video, om.Rejected)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	answer, err := sess.Answer(ctx, om)
	if err != nil {
		t.Fatal(err)
	}
	video := answer[strings.Index(answer, "m=video"):]
	for _, want := range []string{
		"a=simulcast:recv q;h;f",
		"a=rid:q recv", "a=rid:h recv", "a=rid:f recv",
		"a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
		"a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
		"a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
		"a=recvonly",
	} {
		if !strings.Contains(video, want+"\r\n") {
			t.Errorf("the answer's video section lacks %q:\n%s", want, video)
		}
	}
	if !strings.Contains(answer, "a=group:BUNDLE 0 1") {
		t.Errorf("answer bundle: %s", answer)
	}
}
