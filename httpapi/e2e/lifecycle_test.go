package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/gateway/rtmpout"
)

// whipPublish offers over WHIP with a bearer token and returns the session
// id (or the HTTP status when it was refused).
func (h *harness) whipPublish(ctx context.Context, path, token string, pub *gatewaytest.Publisher) (string, int) {
	h.t.Helper()
	offer, err := pub.Offer(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", h.srv.URL+path, strings.NewReader(offer))
	req.Header.Set("Content-Type", "application/sdp")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", resp.StatusCode
	}
	if err := pub.SetAnswer(string(answer)); err != nil {
		h.t.Fatal(err)
	}
	return strings.TrimPrefix(resp.Header.Get("Location"), "/whip/"), resp.StatusCode
}

// TestWHIPRelay: a WHIP publish whose token names a configured relay goes
// live to the relay's targets by itself; unknown keys are refused.
func TestWHIPRelay(t *testing.T) {
	parallel(t, light)
	h := newHarness(t, harnessOptions{relays: func(ingest string) []gateway.Relay {
		return []gateway.Relay{
			{Key: "obs-key-1", Targets: []rtmpout.Spec{{Output: ingest + "/relayed-a"}, {Output: ingest, StreamName: "relayed-b"}}},
			{Key: "obs-key-2", Targets: []rtmpout.Spec{{Output: ingest + "/relayed-c"}}},
		}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	newPub := func() *gatewaytest.Publisher {
		pub, err := gatewaytest.NewPublisher(gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"),
			SeparateParameterSets: true, NoSenderReports: true, Loop: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pub.Close() })
		return pub
	}
	if _, st := h.whipPublish(ctx, "/whip", "not-a-key", newPub()); st != http.StatusUnauthorized {
		t.Errorf("unknown key: %d, want 401", st)
	}
	if _, st := h.whipPublish(ctx, "/whip", "", newPub()); st != http.StatusUnauthorized {
		t.Errorf("no key: %d, want 401", st)
	}
	pub := newPub()
	id, st := h.whipPublish(ctx, "/whip", "obs-key-1", pub)
	if st != http.StatusCreated {
		t.Fatalf("relay publish: %d", st)
	}
	pub.Start(ctx)
	pub2 := newPub()
	id2, st := h.whipPublish(ctx, "/whip/obs-key-2", "", pub2)
	if st != http.StatusCreated {
		t.Fatalf("relay publish by path: %d", st)
	}
	pub2.Start(ctx)
	for _, name := range []string{"relayed-a", "relayed-b", "relayed-c"} {
		if n := h.waitFrames(name, 30, 10*time.Second); n < 30 {
			t.Errorf("%s got %d frames", name, n)
		}
	}
	var sv streamView
	h.call("GET", "/v1/streams/"+id, nil, &sv)
	if sv.State != "live" || sv.Broadcast == nil || len(sv.Broadcast.Targets) != 2 {
		t.Errorf("relay stream: %+v", sv)
	}
	for _, sid := range []string{id, id2} {
		req, _ := http.NewRequest("DELETE", h.srv.URL+"/whip/"+sid, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("whip delete: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	if cmds := h.waitCommands("relayed-a", "FCUnpublish", "deleteStream"); !slices.Contains(cmds, "FCUnpublish") || !slices.Contains(cmds, "deleteStream") {
		t.Errorf("relayed-a commands: %v", cmds)
	}
}

// TestPublisherVanishes: a publisher whose UDP is cut, with no goodbye,
// ends its broadcast cleanly within the media timeout.
func TestPublisherVanishes(t *testing.T) {
	parallel(t, light)
	h := newHarness(t, harnessOptions{mediaTimeout: 2 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	relay, err := gatewaytest.NewLossyRelay(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: h.m.ICEPort()}, gatewaytest.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	pub, sv := h.offerWithBroadcast(ctx, map[string]any{"output": h.ingestURL() + "/vanish"})
	events := h.listen(sv.ID, "")
	if err := pub.SetAnswer(relay.RewriteAnswer(sv.SDP)); err != nil {
		t.Fatal(err)
	}
	pub.Start(ctx)
	if h.waitFrames("vanish", 30, 10*time.Second) < 30 {
		t.Fatal("no frames")
	}
	cut := time.Now()
	relay.Close() // the publisher's network is gone
	events.waitFor(t, "StreamClosed", 6*time.Second)
	took := time.Since(cut)
	t.Logf("stream closed %v after the cut", took)
	if took > 4*time.Second {
		t.Errorf("took %v to notice, media timeout is 2 s", took)
	}
	names := events.names(true)
	if i, j := slices.Index(names, "PublisherDisconnected"), slices.Index(names, "StopBroadcastSuccess"); i < 0 || j < i || names[len(names)-1] != "StreamClosed" {
		t.Errorf("events: %v", names)
	}
	if cmds := h.waitCommands("vanish", "FCUnpublish", "deleteStream"); !slices.Contains(cmds, "FCUnpublish") || !slices.Contains(cmds, "deleteStream") {
		t.Errorf("the ingest was not told: %v", cmds)
	}
	h.expectError("GET", "/v1/streams/"+sv.ID, nil, 404, "NOT_FOUND")
}

// TestShutdownStopsBroadcasts: shutting down (SIGTERM) refuses new
// publishers and stops every live broadcast cleanly.
func TestShutdownStopsBroadcasts(t *testing.T) {
	parallel(t, light)
	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, name := range []string{"down-a", "down-b"} {
		_, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), Loop: true})
		if st, raw := h.call("POST", "/v1/streams/"+id+"/broadcast", map[string]any{"transcodingTargets": map[string]any{"output": h.ingestURL() + "/" + name}}, nil); st != http.StatusCreated {
			t.Fatalf("broadcast: %d %s", st, raw)
		}
		h.waitFrames(name, 10, 5*time.Second)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := h.m.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	// Both publishes were ended properly (the ingest files some commands
	// under no stream name, so count them all).
	var all []string
	collect := func() {
		all = nil
		for _, name := range []string{"down-a", "down-b", ""} {
			all = append(all, h.rec.commandsOf(name)...)
		}
	}
	count := func(cmd string) (n int) {
		for _, c := range all {
			if c == cmd {
				n++
			}
		}
		return n
	}
	for i := 0; i < 100; i++ { // the ingest handles them on its own goroutines
		if collect(); count("FCUnpublish") == 2 && count("deleteStream") == 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if count("FCUnpublish") != 2 || count("deleteStream") != 2 {
		t.Errorf("commands at the ingest: %v", all)
	}
	h.expectError("POST", "/v1/streams", map[string]any{"sdp": "v=0"}, 503, "LIMIT_EXCEEDED")
	if st, _ := h.call("GET", "/readyz", nil, nil); st != http.StatusServiceUnavailable {
		t.Errorf("readyz while draining: %d", st)
	}
	var list struct{ Streams []any }
	h.call("GET", "/v1/streams", nil, &list)
	if len(list.Streams) != 0 {
		t.Errorf("%d streams after shutdown", len(list.Streams))
	}
}

// TestNoSecretsLeak: stream keys never appear in logs, events, responses
// or metrics, whatever happens to the targets.
func TestNoSecretsLeak(t *testing.T) {
	parallel(t, light)
	const secret = "SeCrEtKeY"
	h := newHarness(t, harnessOptions{reconnect: rtmpout.ReconnectPolicy{Initial: 100 * time.Millisecond, Window: 2 * time.Second}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), Loop: true})
	events := h.listen(id, "?stats=250")
	var seen []string
	record := func(_ int, raw []byte) { seen = append(seen, string(raw)) }

	h.rec.rejectName(secret+"-refused", "NetStream.Publish.BadName")
	record(h.call("POST", "/v1/streams/"+id+"/broadcast", map[string]any{"transcodingTargets": map[string]any{"output": h.ingestURL() + "/" + secret + "-refused"}}, nil))
	record(h.call("POST", "/v1/streams/"+id+"/broadcast", map[string]any{"transcodingTargets": map[string]any{"output": "rtmp://127.0.0.1:1/live/" + secret + "-unreachable"}}, nil))
	record(h.call("POST", "/v1/streams/"+id+"/broadcast", map[string]any{"targets": []any{
		map[string]any{"output": h.ingestURL() + "/" + secret + "-ok"},
		map[string]any{"output": h.ingestURL(), "streamname": secret + "-named?token=" + secret},
	}}, nil))
	h.waitFrames(secret+"-ok", 10, 5*time.Second)
	record(h.call("POST", "/v1/streams/"+id+"/broadcast/targets", map[string]any{"output": "rtmps://127.0.0.1:1/app/" + secret + "-tls"}, nil))
	record(h.call("GET", "/v1/streams/"+id, nil, nil))
	record(h.call("GET", "/v1/streams", nil, nil))
	record(h.call("GET", "/v1/streams/"+id+"/broadcast", nil, nil))
	record(h.call("GET", "/v1/streams/"+id+"/stats", nil, nil))
	seen = append(seen, h.get("/metrics"))
	time.Sleep(600 * time.Millisecond)
	record(h.call("DELETE", "/v1/streams/"+id, nil, nil))
	events.waitFor(t, "StreamClosed", 5*time.Second)
	for _, e := range events.all() {
		seen = append(seen, e.name+" "+toJSON(e.data))
	}
	seen = append(seen, h.logs.String())
	for i, s := range seen {
		if strings.Contains(s, secret) {
			at := strings.Index(s, secret)
			t.Errorf("output %d leaks the stream key: ...%s...", i, s[max(0, at-200):min(len(s), at+60)])
		}
	}
	if !strings.Contains(strings.Join(seen, "\n"), "/live/****") {
		t.Error("redacted outputs are not shown at all")
	}
}

// waitCommands waits (briefly) until the ingest saw every one of cmds for
// stream, and returns what it saw.
func (h *harness) waitCommands(stream string, cmds ...string) []string {
	return h.rec.waitCommands(stream, cmds...)
}

func (r *recorder) waitCommands(stream string, cmds ...string) []string {
	var got []string
	for i := 0; i < 100; i++ {
		got = r.commandsOf(stream)
		all := true
		for _, c := range cmds {
			all = all && slices.Contains(got, c)
		}
		if all {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return got
}
