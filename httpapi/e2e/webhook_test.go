package e2e

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/gateway/webhook"
)

// hookRequest is one POST the test's webhook receiver got.
type hookRequest struct {
	header http.Header
	raw    []byte
	body   webhook.Body
}

// TestEventWebhooks: a real stream's life (publish, broadcast to
// rtmp://host/live/<key>?token=<token>, metadata, stop, close) reaches the
// operator's backend as signed POSTs, in order, the same events and data
// the SSE stream carries, retried past a 503, with no stream key, token or
// webhook credential anywhere.
func TestEventWebhooks(t *testing.T) {
	parallel(t, light)
	const (
		streamKey = "SeCrEtKeY"
		token     = "ToKeNvAlUe"
		hookToken = "HoOkToKeN"
		secret    = "whsec_e2e"
	)
	var mu sync.Mutex
	var reqs []hookRequest
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var b webhook.Body
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Errorf("webhook body %q: %v", raw, err)
		}
		mu.Lock()
		reqs = append(reqs, hookRequest{header: r.Header.Clone(), raw: raw, body: b})
		first := len(reqs) == 1
		mu.Unlock()
		if first {
			w.WriteHeader(http.StatusServiceUnavailable) // retried, and order kept
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(recv.Close)
	hookLogs := &gatewaytest.SyncBuffer{}
	hooks, err := webhook.New(webhook.Config{URLs: []string{recv.URL + "/hooks?token=" + hookToken}, Secret: secret,
		BackoffInitial: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(hookLogs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the harness: runs after the manager's shutdown.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hooks.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	h := newHarness(t, harnessOptions{eventSink: hooks})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"), Loop: true})
	sse := h.listen(id, "")
	h.startTargets(id, map[string]any{"output": h.ingestURL() + "/" + streamKey + "?token=" + token})
	sse.waitFor(t, "StartBroadcastSuccess", 10*time.Second)
	if st, raw := h.call("POST", "/v1/streams/"+id+"/metadata", map[string]any{"handlerName": "onMetaData", "values": map[string]any{"show": "hooks"}}, nil); st != http.StatusAccepted {
		t.Fatalf("metadata: %d %s", st, raw)
	}
	sse.waitFor(t, "MetaDataSent", 5*time.Second)
	if st, raw := h.call("DELETE", "/v1/streams/"+id+"/broadcast", nil, nil); st/100 != 2 {
		t.Fatalf("stop broadcast: %d %s", st, raw)
	}
	sse.waitFor(t, "StopBroadcastSuccess", 5*time.Second)
	h.closeStream(id)
	sse.waitFor(t, "StreamClosed", 5*time.Second)

	var got []hookRequest
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		got = slices.Clone(reqs)
		mu.Unlock()
		if n := len(got); n > 0 && got[n-1].body.Event == "StreamClosed" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(got) < 2 || got[0].body.ID != got[1].body.ID || got[1].header.Get(webhook.AttemptHeader) != "2" {
		t.Fatalf("the refused first delivery was not retried first: %d requests", len(got))
	}
	delivered := got[1:] // the 503 answered one is retried as got[1]
	var names []string
	ids := map[string]bool{}
	bySeq := map[uint64]hookRequest{}
	var last uint64
	for i, r := range delivered {
		b := r.body
		names = append(names, b.Event)
		if err := webhook.Verify(secret, r.header.Get(webhook.SignatureHeader), r.raw); err != nil {
			t.Errorf("delivery %d (%s): %v", i, b.Event, err)
		}
		if b.Stream != id || b.Seq <= last || ids[b.ID] || r.header.Get(webhook.EventHeader) != b.Event || r.header.Get(webhook.DeliveryHeader) != b.ID {
			t.Errorf("delivery %d: %+v (after seq %d), headers %v", i, b, last, r.header)
		}
		last, ids[b.ID], bySeq[b.Seq] = b.Seq, true, r
		for _, s := range []string{streamKey, token, hookToken} {
			if strings.Contains(string(r.raw), s) || strings.Contains(toJSON(r.header), s) {
				t.Errorf("delivery %d (%s) carries %q: %s", i, b.Event, s, r.raw)
			}
		}
	}
	// The lifecycle's events, in order (target events, if any, between).
	want := []string{"PublisherConnected", "StartBroadcastSuccess", "MetaDataSent", "StopBroadcastSuccess", "StreamClosed"}
	at := 0
	for _, n := range names {
		if at < len(want) && n == want[at] {
			at++
		}
	}
	if at != len(want) || names[0] != "PublisherConnected" || names[len(names)-1] != "StreamClosed" {
		t.Errorf("webhook events %v, want %v in that order", names, want)
	}
	// One parser serves both: the webhook's data is the SSE event's data.
	for _, e := range sse.all() {
		var seq uint64
		if err := json.Unmarshal([]byte(e.id), &seq); err != nil {
			continue
		}
		r, ok := bySeq[seq]
		if !ok {
			t.Errorf("SSE event %s %s has no webhook delivery", e.id, e.name)
			continue
		}
		var data map[string]any
		if err := json.Unmarshal(r.body.Data, &data); err != nil || r.body.Event != e.name || toJSON(data) != toJSON(e.data) {
			t.Errorf("seq %d: webhook %s %s, SSE %s %s", seq, r.body.Event, r.body.Data, e.name, toJSON(e.data))
		}
	}
	var started map[string]any
	if err := json.Unmarshal(bySeq[seqOf(delivered, "StartBroadcastSuccess")].body.Data, &started); err != nil ||
		!strings.Contains(toJSON(started), "/live/****") {
		t.Errorf("StartBroadcastSuccess data %v: no redacted output", started)
	}
	metrics := h.get("/metrics")
	for _, line := range []string{"castbridge_webhook_deliveries_total ", "castbridge_webhook_failed_attempts_total 1\n", `castbridge_webhook_dropped_total{reason="gave_up"} 0`} {
		if !strings.Contains(metrics, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if strings.Contains(metrics, "castbridge_webhook_deliveries_total 0\n") {
		t.Error("/metrics counts no webhook delivery")
	}
	if !strings.Contains(hookLogs.String(), "answered 503") {
		t.Errorf("the retry is not logged: %s", hookLogs.String())
	}
	if logs := h.logs.String() + hookLogs.String(); strings.Contains(logs, hookToken) || strings.Contains(logs, streamKey) {
		t.Error("the logs show the webhook's token or the stream key")
	}
}

func seqOf(rs []hookRequest, event string) uint64 {
	for _, r := range rs {
		if r.body.Event == event {
			return r.body.Seq
		}
	}
	return 0
}
