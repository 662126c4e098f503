package e2e

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
)

// TestLimits: each limit answers LIMIT_EXCEEDED with its status (503 for
// the gateway's capacity, 429 for what one stream's clients hold), counts
// its refusals in /metrics, and a flood of refused SSE subscribers leaves
// no goroutine behind.
func TestLimits(t *testing.T) {
	// Counts the process's goroutines: runs alone, before the parallel tests.
	h := newHarness(t, harnessOptions{maxStreams: 1, maxTargets: 2, maxSSE: 3})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), Loop: true})

	// Streams: the gateway's capacity.
	req, _ := http.NewRequest("POST", h.srv.URL+"/v1/streams", strings.NewReader(`{"sdp":"v=0\r\n"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(raw), `"LIMIT_EXCEEDED"`) ||
		!strings.Contains(string(raw), "--max-streams") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a stream past --max-streams: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), raw)
	}

	// SSE subscribers: three fit, then 50 are refused with nothing kept.
	var held []*sseClient
	for range 3 {
		held = append(held, h.listen(id, ""))
	}
	time.Sleep(100 * time.Millisecond)
	base := runtime.NumGoroutine()
	for range 50 {
		e := h.expectError("GET", "/v1/streams/"+id+"/events", nil, http.StatusTooManyRequests, "LIMIT_EXCEEDED")
		if !strings.Contains(e.Error.Message, "3 event subscribers") {
			t.Fatalf("refused subscriber: %q", e.Error.Message)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	var now int
	for i := 0; i < 50; i++ {
		if now = runtime.NumGoroutine(); now <= base {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if now > base {
		t.Errorf("goroutines %d after 50 refused subscribers, baseline %d", now, base)
	}
	held[0].close()
	time.Sleep(100 * time.Millisecond)
	h.listen(id, "") // the freed place is usable

	// Targets: per broadcast.
	target := func(key string) map[string]any { return map[string]any{"output": h.ingestURL() + "/" + key} }
	e := h.expectError("POST", "/v1/streams/"+id+"/broadcast", map[string]any{"targets": []any{target("a"), target("b"), target("c")}},
		http.StatusTooManyRequests, "LIMIT_EXCEEDED")
	if !strings.Contains(e.Error.Message, "at most 2 targets") {
		t.Errorf("three targets: %q", e.Error.Message)
	}
	var bv broadcastView
	if st, raw := h.call("POST", "/v1/streams/"+id+"/broadcast", map[string]any{"targets": []any{target("a"), target("b")}}, &bv); st != http.StatusCreated || len(bv.Targets) != 2 {
		t.Fatalf("two targets: %d %s", st, raw)
	}
	h.expectError("POST", "/v1/streams/"+id+"/broadcast/targets", target("c"), http.StatusTooManyRequests, "LIMIT_EXCEEDED")
	if st, _ := h.call("GET", "/v1/streams/"+id+"/broadcast", nil, &bv); st != http.StatusOK || len(bv.Targets) != 2 {
		t.Errorf("after a refused add: %d targets, want 2", len(bv.Targets))
	}

	resp, err = http.Get(h.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"# TYPE castbridge_limit_refusals_total counter",
		`castbridge_limit_refusals_total{limit="streams"} 1` + "\n",
		`castbridge_limit_refusals_total{limit="sse_subscribers"} 50` + "\n",
		`castbridge_limit_refusals_total{limit="targets"} 2` + "\n",
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
