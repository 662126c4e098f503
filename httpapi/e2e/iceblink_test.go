package e2e

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
)

// TestPublisherNetworkBlinks: the publisher's uplink goes away for 2 s,
// long enough for ICE to say disconnected, and comes back. ICE
// disconnected is a grace period: the stream stays, its broadcast goes on
// on the same ingest connection, and frames resume at the ingest. Cut for
// good, the stream still ends within the media timeout.
func TestPublisherNetworkBlinks(t *testing.T) {
	parallel(t, light)
	const mediaTimeout = 4 * time.Second
	h := newHarness(t, harnessOptions{mediaTimeout: mediaTimeout, iceDisconnected: 500 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	relay, err := gatewaytest.NewLossyRelay(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: h.m.ICEPort()}, gatewaytest.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	pub, sv := h.offerWithBroadcast(ctx, map[string]any{"output": h.ingestURL() + "/blink"})
	events := h.listen(sv.ID, "")
	if err := pub.SetAnswer(relay.RewriteAnswer(sv.SDP)); err != nil {
		t.Fatal(err)
	}
	pub.Start(ctx)
	if h.waitFrames("blink", 30, 10*time.Second) < 30 {
		t.Fatal("no frames")
	}

	relay.SetCut(true)
	time.Sleep(2 * time.Second)
	if !strings.Contains(h.logs.String(), "ice disconnected") {
		t.Fatal("ICE did not go disconnected during the 2 s cut: the test tests nothing")
	}
	var during streamView
	if st, raw := h.call("GET", "/v1/streams/"+sv.ID, nil, &during); st != 200 || during.State != "live" {
		t.Fatalf("during the cut: %d %s, want the stream live", st, raw)
	}
	before := h.videoFrames("blink")
	relay.SetCut(false)
	if got := h.waitFrames("blink", before+30, 10*time.Second); got < before+30 {
		t.Fatalf("frames did not resume after the cut: %d, had %d", got, before)
	}
	if relay.CutDrops() == 0 {
		t.Error("the relay dropped nothing while cut")
	}
	var after streamView
	if st, raw := h.call("GET", "/v1/streams/"+sv.ID, nil, &after); st != 200 || after.State != "live" {
		t.Fatalf("after the cut: %d %s, want the stream live", st, raw)
	}
	names := events.names(true)
	for _, n := range []string{"PublisherDisconnected", "StopBroadcastSuccess", "StreamClosed", "TargetReconnecting"} {
		if slices.Contains(names, n) {
			t.Errorf("a 2 s blink brought %s: %v", n, names)
		}
	}
	if n := strings.Count(strings.Join(names, " "), "TargetConnected"); n != 1 {
		t.Errorf("TargetConnected %d times, want once (one ingest connection): %v", n, names)
	}

	// Gone for good: the media timeout ends it.
	relay.SetCut(true)
	cut := time.Now()
	events.waitFor(t, "StreamClosed", mediaTimeout+4*time.Second)
	if took := time.Since(cut); took > mediaTimeout+2*time.Second {
		t.Errorf("closed %v after the cut, media timeout is %v", took, mediaTimeout)
	}
	h.expectError("GET", "/v1/streams/"+sv.ID, nil, 404, "NOT_FOUND")
}
