package e2e

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/rtmpout"
	"github.com/castbridge/castbridge/transmux/format/flv"
)

// whipBrowserResult is what httpapi/web/test/whip.mjs writes to result.json.
type whipBrowserResult struct {
	Failed                                 int
	LiveAt, RestartAt, RestartedAt, StopAt int64 // unix ms
	UfragBefore, UfragAfter, Codec         string
	ETag                                   string  `json:"etag"`
	ETagAfterRestart                       string  `json:"etagAfterRestart"`
	EstimateBps                            float64 `json:"estimateBps"` // the highest availableOutgoingBitrate of the first phase
	Requests                               []struct {
		Method, IfMatch, ETag string
		Status                int
	}
}

// TestBrowserWHIPClient publishes from Chromium with whip-whep's whip.js
// (npm, by the WHIP RFC's author) loaded as it ships, from a page on
// another origin: trickle ICE on, a canvas and an oscillator with H.264
// preferred, to a WHIP relay key whose target is the in-process ingest.
// After a while the page restarts ICE, and stops later. The library must
// see the ETag through CORS, every PATCH must succeed (trickle 204 with the
// POST's ETag; the restart 200 with If-Match: * and a new ETag), and the
// ingest must get AVC and AAC of the time the page was live, including
// after the restart. Chromium's bandwidth estimate must have risen well
// above its start bitrate: castbridge sends REMB only to cap a publisher
// (a target's videobitrate; none here), so only its transport-wide
// feedback (webrtcin's twccFeedback) can raise it.
func TestBrowserWHIPClient(t *testing.T) {
	parallel(t, heavy)
	testDir, err := filepath.Abs(filepath.Join("..", "web", "test"))
	if err != nil {
		t.Fatal(err)
	}
	node, chromium := needBrowser(t, testDir)
	lib := filepath.Join(testDir, "node_modules", "whip-whep", "whip.js")
	if _, err := os.Stat(lib); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("whip-whep missing (%v); CI is set, so this is an error", err)
		}
		t.Skipf("whip-whep missing (cd httpapi/web/test && npm ci): %v", err)
	}
	const key = "browser-whip-key"
	h := newHarness(t, harnessOptions{relays: func(ingest string) []gateway.Relay {
		return []gateway.Relay{{Key: key, Targets: []rtmpout.Spec{{Output: ingest, StreamName: "whipjs"}}}}
	}})
	// The page's own origin: the library and the page, as files.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /whip.html", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(testDir, "whip.html"))
	})
	mux.HandleFunc("GET /whip.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		http.ServeFile(w, r, lib)
	})
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	pages := httptest.NewServer(mux)
	defer pages.Close()

	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pageURL := pages.URL + "/whip.html?" + url.Values{"whip": {h.srv.URL + "/whip"}, "token": {key}}.Encode()
	var res whipBrowserResult
	runErr := runBrowserScript(ctx, t, browserRun{node: node, chromium: chromium, dir: testDir, out: out}, &res, "whip.mjs", pageURL)
	if runErr != nil || res.Failed > 0 {
		t.Fatalf("whip.mjs: %v, %d checks failed (see above)", runErr, res.Failed)
	}

	// What the library was answered.
	var posts, trickles, restarts, deletes int
	for _, r := range res.Requests {
		switch {
		case r.Method == "POST" && r.Status == http.StatusCreated && r.ETag == res.ETag:
			posts++
		case r.Method == "PATCH" && r.Status == http.StatusNoContent && (r.IfMatch == res.ETag || r.IfMatch == res.ETagAfterRestart):
			trickles++
		case r.Method == "PATCH" && r.Status == http.StatusOK && r.IfMatch == "*" && r.ETag == res.ETagAfterRestart && r.ETag != res.ETag:
			restarts++
		case r.Method == "DELETE" && r.Status == http.StatusOK:
			deletes++
		default:
			t.Errorf("unexpected request/answer: %+v (ETags %s, %s)", r, res.ETag, res.ETagAfterRestart)
		}
	}
	if posts != 1 || trickles < 1 || restarts != 1 || deletes != 1 {
		t.Errorf("%d POST, %d trickle PATCH, %d restart PATCH, %d DELETE; want 1, ≥1, 1, 1", posts, trickles, restarts, deletes)
	}

	// libwebrtc starts its estimate at 300 kbit/s and raises it only on
	// feedback that reports its packets arriving (its first probes, at
	// several times the start, count only then). With castbridge's
	// feedback turned off the highest estimate of the phase was 325
	// kbit/s; with it, 1.1–4.2 Mbit/s in four runs.
	const minEstimate = 600_000
	t.Logf("Chromium's send-side bandwidth estimate, highest in the first %d ms: %.0f kbit/s", res.RestartAt-res.LiveAt, res.EstimateBps/1000)
	if res.EstimateBps <= minEstimate {
		t.Errorf("Chromium's bandwidth estimate is %.0f kbit/s, want > %d (twice its start): it did not take castbridge's transport-wide feedback", res.EstimateBps/1000, minEstimate/1000)
	}

	// Chromium's DTLS and SRTP, read by the fast path (across the ICE
	// restart too).
	h.checkFastPath(300, 200)

	// What the ingest received.
	_, msgs := h.rec.get("whipjs")
	var videoSeq, audioSeq bool
	var keyframes, frames, aac, framesAfterRestart int
	var v0, v1, a0, a1 uint32
	restarted := time.UnixMilli(res.RestartedAt)
	for _, m := range msgs {
		switch m.msg.Type {
		case flv.TagVideo:
			v := parseVideo(t, m) // fails on anything but AVC
			if v.seqHeader {
				videoSeq = true
				continue
			}
			if frames == 0 {
				v0 = v.ts
				// The relay's broadcast starts by itself once media flows.
				t.Logf("Chromium + whip-whep: page live -> first video tag at the relay's ingest %v", m.at.Sub(time.UnixMilli(res.LiveAt)).Round(time.Millisecond))
			}
			v1 = v.ts
			frames++
			if v.keyframe {
				keyframes++
			}
			if m.at.After(restarted) {
				framesAfterRestart++
			}
		case flv.TagAudio:
			b := m.msg.Body
			if len(b) < 2 || b[0]>>4 != 10 {
				t.Fatalf("audio tag is not AAC: % x", b[:min(len(b), 4)])
			}
			if b[1] == 0 {
				audioSeq = true
				continue
			}
			if aac == 0 {
				a0 = m.msg.Timestamp
			}
			a1 = m.msg.Timestamp
			aac++
		}
	}
	liveS := float64(res.StopAt-res.LiveAt) / 1000
	videoS, audioS := float64(v1-v0)/1000, float64(a1-a0)/1000
	t.Logf("browser live %.1f s (restart took %d ms); ingest: %d AVC frames (%d keyframes) over %.2f s, %d after the restart; %d AAC frames over %.2f s",
		liveS, res.RestartedAt-res.RestartAt, frames, keyframes, videoS, framesAfterRestart, aac, audioS)
	if !videoSeq || !audioSeq || keyframes == 0 {
		t.Fatalf("sequence headers video %v audio %v, %d keyframes", videoSeq, audioSeq, keyframes)
	}
	// The broadcast starts once media flows (and a keyframe came); it may
	// lose the restart's gap. Hold the durations to the page's live time.
	if videoS < liveS-4 || videoS > liveS+1.5 {
		t.Errorf("video spans %.2f s, the page was live %.2f s", videoS, liveS)
	}
	if math.Abs(audioS-videoS) > 1 {
		t.Errorf("audio spans %.2f s, video %.2f s", audioS, videoS)
	}
	if fps := float64(frames) / videoS; fps < 10 {
		t.Errorf("%.1f video frames per second", fps)
	}
	if aacRate := float64(aac) / audioS; aacRate < 40 || aacRate > 50 {
		t.Errorf("%.1f AAC frames per second, want ~46.9 (1024 samples at 48 kHz)", aacRate)
	}
	afterS := float64(res.StopAt-res.RestartedAt) / 1000
	if float64(framesAfterRestart) < afterS*10 {
		t.Errorf("%d video frames in the %.1f s after the restart", framesAfterRestart, afterS)
	}
}
