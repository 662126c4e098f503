package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v3"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/transmux/format/flv"
)

// patchICE sends a trickle-ice-sdpfrag to a WHIP session and returns the
// status, the ETag and the body.
func (h *harness) patchICE(path, contentType, ifMatch, frag string) (int, string, string) {
	h.t.Helper()
	req, _ := http.NewRequest("PATCH", h.srv.URL+path, strings.NewReader(frag))
	req.Header.Set("Content-Type", contentType)
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("ETag"), string(body)
}

// sdpLine returns the value of the first "a=<name>:" line of an SDP.
func sdpLine(sdp, name string) string {
	for l := range strings.SplitSeq(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "a="+name+":"); ok {
			return v
		}
	}
	return ""
}

// TestWHIPTrickleAndRestart: a pion publisher offers over WHIP without
// candidates and trickles them with PATCH (If-Match: the POST's ETag);
// it is not told the gateway's candidates, so ICE comes up only on the
// trickled ones. Media flows to the ingest. Then an ICE restart over
// PATCH (If-Match: *) answers 200 with the gateway's new credentials and
// candidates and a new ETag; the publisher applies them, ICE connects
// again and the same media keeps arriving. Wrong content type, stale
// ETag, unknown mid and malformed fragments are refused as RFC 9725 says.
func TestWHIPTrickleAndRestart(t *testing.T) {
	parallel(t, light)
	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, err := gatewaytest.NewPublisher(gatewaytest.PublisherConfig{
		VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"), Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	pc := pub.PeerConnection()
	var mu sync.Mutex
	var gathered []string
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			mu.Lock()
			gathered = append(gathered, c.ToJSON().Candidate)
			mu.Unlock()
		}
	})
	iceUp := make(chan struct{}, 4)
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateConnected {
			iceUp <- struct{}{}
		}
	})
	takeCandidates := func() []string {
		select {
		case <-webrtc.GatheringCompletePromise(pc):
		case <-time.After(5 * time.Second):
			t.Fatal("publisher gathering did not finish")
		}
		mu.Lock()
		defer mu.Unlock()
		c := gathered
		gathered = nil
		if len(c) == 0 {
			t.Fatal("the publisher gathered no candidates")
		}
		return c
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", h.srv.URL+"/whip", strings.NewReader(offer.SDP))
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("whip post: %d %s", resp.StatusCode, answer)
	}
	loc, etag := resp.Header.Get("Location"), resp.Header.Get("ETag")
	id := strings.TrimPrefix(loc, "/whip/")
	if len(etag) != 26 || etag[0] != '"' || etag[25] != '"' || resp.Header.Get("Accept-Patch") != "application/trickle-ice-sdpfrag" {
		t.Fatalf("POST headers: ETag %q Accept-Patch %q", etag, resp.Header.Get("Accept-Patch"))
	}
	var noCandidates []string
	for l := range strings.SplitSeq(string(answer), "\r\n") {
		if !strings.HasPrefix(l, "a=candidate:") {
			noCandidates = append(noCandidates, l)
		}
	}
	if err := pub.SetAnswer(strings.Join(noCandidates, "\r\n")); err != nil {
		t.Fatal(err)
	}
	pub.Start(ctx)
	ufrag, pwd := sdpLine(pc.LocalDescription().SDP, "ice-ufrag"), sdpLine(pc.LocalDescription().SDP, "ice-pwd")
	head := "a=ice-ufrag:" + ufrag + "\r\na=ice-pwd:" + pwd + "\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\n"
	const fragType = "application/trickle-ice-sdpfrag"

	// Refusals first: none of them may add a candidate.
	cands := takeCandidates()
	one := head + "a=" + cands[0] + "\r\n"
	if st, _, body := h.patchICE(loc, "application/sdp", etag, one); st != http.StatusUnsupportedMediaType || !strings.Contains(body, fragType) {
		t.Errorf("wrong content type: %d %s", st, body)
	}
	if st, _, body := h.patchICE(loc, fragType, `"0123456789abcdef01234567"`, one); st != http.StatusPreconditionFailed || !strings.Contains(body, "ETAG_MISMATCH") {
		t.Errorf("stale ETag: %d %s", st, body)
	}
	if st, _, body := h.patchICE(loc, fragType, etag, strings.Replace(one, "a=mid:0", "a=mid:9", 1)); st != http.StatusUnprocessableEntity || !strings.Contains(body, "UNKNOWN_MID") {
		t.Errorf("unknown mid: %d %s", st, body)
	}
	if st, _, body := h.patchICE(loc, fragType, etag, head+"a=candidate:1 1 udp\r\n"); st != http.StatusBadRequest || !strings.Contains(body, "INVALID_SDP") {
		t.Errorf("malformed candidate: %d %s", st, body)
	}
	if st, _, body := h.patchICE("/whip/st_nope", fragType, "", one); st != http.StatusNotFound {
		t.Errorf("unknown session: %d %s", st, body)
	}
	select {
	case <-iceUp:
		t.Fatal("ICE connected though no candidate was accepted yet")
	case <-time.After(500 * time.Millisecond):
	}

	// Trickle, one candidate per PATCH as browsers do, then the end.
	for _, c := range cands {
		if st, _, body := h.patchICE(loc, fragType, etag, head+"a="+c+"\r\n"); st != http.StatusNoContent || body != "" {
			t.Fatalf("trickle %q: %d %s", c, st, body)
		}
	}
	if st, _, body := h.patchICE(loc, fragType, etag, head+"a=end-of-candidates\r\n"); st != http.StatusNoContent {
		t.Fatalf("end of candidates: %d %s", st, body)
	}
	select {
	case <-iceUp:
	case <-time.After(10 * time.Second):
		t.Fatal("ICE did not connect on the trickled candidates")
	}
	h.waitState(id, "connected", 10*time.Second)
	h.startTargets(id, map[string]any{"output": h.ingestURL(), "streamname": "trickle"})
	if got := h.waitFrames("trickle", 30, 10*time.Second); got < 30 {
		t.Fatalf("%d video frames before the restart", got)
	}

	// ICE restart.
	restart, err := pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(restart); err != nil {
		t.Fatal(err)
	}
	ufrag2, pwd2 := sdpLine(restart.SDP, "ice-ufrag"), sdpLine(restart.SDP, "ice-pwd")
	if ufrag2 == ufrag {
		t.Fatal("the publisher's restart kept its ufrag")
	}
	frag := "a=ice-ufrag:" + ufrag2 + "\r\na=ice-pwd:" + pwd2 + "\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\n"
	for _, c := range takeCandidates() {
		frag += "a=" + c + "\r\n"
	}
	frag += "a=end-of-candidates\r\n"
	st, etag2, gw := h.patchICE(loc, fragType, "*", frag)
	if st != http.StatusOK || etag2 == "" || etag2 == etag {
		t.Fatalf("restart: %d ETag %q (was %q)\n%s", st, etag2, etag, gw)
	}
	restartedAt := time.Now()
	gwUfrag, gwPwd := sdpLine(gw, "ice-ufrag"), sdpLine(gw, "ice-pwd")
	if gwUfrag == "" || gwUfrag == sdpLine(string(answer), "ice-ufrag") || gwPwd == "" || sdpLine(gw, "mid") != "0" ||
		!strings.Contains(gw, "a=candidate:") || !strings.Contains(gw, "127.0.0.1") || !strings.HasSuffix(gw, "a=end-of-candidates\r\n") {
		t.Fatalf("the gateway's restart fragment:\n%s", gw)
	}
	if st, _, body := h.patchICE(loc, fragType, etag, head+"a=end-of-candidates\r\n"); st != http.StatusPreconditionFailed {
		t.Errorf("the first ETag after the restart: %d %s", st, body)
	}
	// As a WHIP client applies it: the last answer with the new ICE
	// credentials and the candidates of the fragment.
	var ans []string
	for l := range strings.SplitSeq(string(answer), "\r\n") {
		switch {
		case strings.HasPrefix(l, "a=candidate:"), strings.HasPrefix(l, "a=end-of-candidates"):
		case strings.HasPrefix(l, "a=ice-ufrag:"):
			ans = append(ans, "a=ice-ufrag:"+gwUfrag)
		case strings.HasPrefix(l, "a=ice-pwd:"):
			ans = append(ans, "a=ice-pwd:"+gwPwd)
		default:
			ans = append(ans, l)
		}
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: strings.Join(ans, "\r\n")}); err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(gw, "\r\n") {
		if c, ok := strings.CutPrefix(l, "a="); ok && strings.HasPrefix(c, "candidate:") {
			mid := "0"
			if err := pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c, SDPMid: &mid}); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case <-iceUp:
	case <-time.After(10 * time.Second):
		t.Fatal("ICE did not connect again after the restart")
	}
	if n := h.rec.waitFrames("trickle", h.videoFrames("trickle")+60, 10*time.Second); n == 0 {
		t.Fatal("no frames")
	}
	sent := map[uint64]bool{}
	for _, f := range pub.Sent() {
		sent[f.Digest] = true
	}
	_, msgs := h.rec.get("trickle")
	var after, aac int
	for _, m := range msgs {
		if m.at.Before(restartedAt) {
			continue
		}
		switch m.msg.Type {
		case flv.TagVideo:
			if v := parseVideo(t, m); !v.seqHeader {
				if !sent[v.digest] {
					t.Fatalf("a frame after the restart is none the publisher sent")
				}
				after++
			}
		case flv.TagAudio:
			if len(m.msg.Body) > 1 && m.msg.Body[0]>>4 == 10 && m.msg.Body[1] == 1 {
				aac++
			}
		}
	}
	if after < 60 || aac < 60 {
		t.Fatalf("after the restart: %d video frames, %d AAC frames; want 60 of each", after, aac)
	}
	t.Logf("restart: 200 with the gateway's fragment; %d video and %d AAC frames followed", after, aac)
	h.closeStream(id)
}
