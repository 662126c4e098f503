package e2e

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
)

// TestLossyNetwork runs the publisher through a relay that drops 2% of RTP
// packets and reorders some: NACKs and PLIs recover, and the nginx
// recording decodes without a single error.
func TestLossyNetwork(t *testing.T) {
	parallel(t, heavy)
	dir := t.TempDir()
	nginx := gatewaytest.StartNginx(t, dir)
	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	relay, err := gatewaytest.NewLossyRelay(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: h.m.ICEPort()},
		gatewaytest.RelayConfig{DropRTP: 0.02, ReorderRTP: 0.02, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	pub, sv := h.offerWithBroadcast(ctx, map[string]any{"output": "rtmp://" + nginx + "/live/lossy"})
	if err := pub.SetAnswer(relay.RewriteAnswer(sv.SDP)); err != nil {
		t.Fatal(err)
	}
	pub.Start(ctx)
	h.waitState(sv.ID, "live", 10*time.Second)
	time.Sleep(6 * time.Second)
	cancel()
	pub.Wait()
	stats := h.streamStats(sv.ID)
	if st, raw := h.call("DELETE", "/v1/streams/"+sv.ID, nil, nil); st != http.StatusNoContent {
		t.Fatalf("delete: %d %s", st, raw)
	}
	t.Logf("relay dropped %d, reordered %d, forwarded %d; gateway sent %d NACKs, %d PLIs; publisher saw %d NACKs, %d PLIs",
		relay.Dropped(), relay.Reordered(), relay.Forwarded(), stats.NACKs, stats.PLIs, pub.NACKs(), pub.PLIs())
	if relay.Dropped() == 0 || relay.Reordered() == 0 {
		t.Fatal("the relay dropped or reordered nothing")
	}
	if stats.NACKs == 0 || pub.NACKs() == 0 {
		t.Error("no NACK was sent")
	}
	if stats.PLIs == 0 || pub.PLIs() == 0 {
		t.Error("no PLI was sent")
	}
	// The relay drops Opus too; jitter and RTT come from real measurements.
	t.Logf("stats: video jitter %.2f ms, audio jitter %.2f ms, audio lost %d, rtt %.2f ms", stats.VideoJitterMs, stats.AudioJitterMs, stats.AudioLost, stats.RTTMs)
	if stats.AudioLost == 0 || stats.VideoJitterMs <= 0 || stats.AudioJitterMs <= 0 || stats.RTTMs <= 0 {
		t.Errorf("inbound stats: %+v", stats)
	}
	checkReceptionReports(t, pub.ReceptionReports())
	// Transport-wide feedback every 100 ms while packets arrive: ~70 in ~7 s
	// (counted per track the publisher reads it on).
	if n := pub.TWCCFeedbacks(); n < 40 || n > 200 {
		t.Errorf("%d TWCC feedback packets in ~7 s, want about 10 a second", n)
	} else {
		t.Logf("%d TWCC feedback packets", n)
	}
	path := filepath.Join(dir, "lossy.flv")
	waitFile(t, path)
	pr, err := gatewaytest.Probe(path)
	if err != nil {
		t.Fatal(err)
	}
	if v := pr.Video(); v == nil || v.CodecName != "h264" || v.NbReadFrames < 100 {
		t.Fatalf("recording: %+v", v)
	}
	if errs, err := gatewaytest.DecodeErrors(path); err != nil || errs != "" {
		t.Errorf("the recording does not decode cleanly: %v\n%s", err, errs)
	}
}

// TestBadInput: each bad request gets its status and code, and a second
// session broadcasting beside it never notices.
func TestBadInput(t *testing.T) {
	parallel(t, light)
	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The bystander: live to the in-process ingest the whole time.
	_, bystander := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), Loop: true})
	if st, raw := h.call("POST", "/v1/streams/"+bystander+"/broadcast", map[string]any{
		"transcodingTargets": map[string]any{"output": h.ingestURL() + "/bystander"}}, nil); st != http.StatusCreated {
		t.Fatalf("bystander broadcast: %d %s", st, raw)
	}
	framesBefore := h.waitFrames("bystander", 1, 5*time.Second)

	// Malformed SDP and wrong bodies.
	h.expectError("POST", "/v1/streams", map[string]any{"sdp": "v=0\r\nthis is not sdp"}, 400, "INVALID_SDP")
	h.expectError("POST", "/v1/streams", map[string]any{"sdp": ""}, 400, "INVALID_SDP")
	h.expectError("POST", "/v1/streams", `{"sdp": 12}`, 400, "INVALID_REQUEST")
	h.expectError("POST", "/v1/streams", `{"sdp": `, 400, "INVALID_REQUEST")

	// An offer with neither H.264 nor Opus.
	vp8, err := gatewaytest.NewPublisher(gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), OfferCodec: "VP8"})
	if err != nil {
		t.Fatal(err)
	}
	offer, err := vp8.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := h.expectError("POST", "/v1/streams", map[string]any{"sdp": offer}, 422, "UNSUPPORTED_CODEC")
	if !strings.Contains(e.Error.Message, "VP8") {
		t.Errorf("message does not say what was offered: %q", e.Error.Message)
	}
	_ = vp8.Close()

	// A second, connected stream to try broadcasts on.
	_, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), Loop: true})
	path := "/v1/streams/" + id + "/broadcast"
	for _, out := range []string{"http://example.com/live/key", "rtmp://", "rtmp://127.0.0.1:1935", "rtmp://127.0.0.1:1935/live", "not a url", "rtmp://host:99999/live/key"} {
		h.expectError("POST", path, map[string]any{"transcodingTargets": map[string]any{"output": out}}, 400, "INVALID_OUTPUT")
	}
	h.expectError("POST", path, map[string]any{"transcodingTargets": map[string]any{"output": h.ingestURL() + "/x",
		"rtmpconnectinfo": map[string]any{"nested": map[string]any{"a": 1}}}}, 400, "INVALID_REQUEST")
	h.expectError("POST", path, map[string]any{"transcodingTargets": map[string]any{"output": h.ingestURL() + "/x", "dropframes": "maybe"}}, 400, "INVALID_REQUEST")
	h.expectError("POST", path, map[string]any{}, 400, "INVALID_REQUEST")
	for _, br := range []int{1000, 31999, 576001} {
		e := h.expectError("POST", path, map[string]any{"transcodingTargets": map[string]any{"output": h.ingestURL() + "/x", "audiobitrate": br}}, 400, "INVALID_REQUEST")
		if !strings.Contains(e.Error.Message, "audiobitrate") {
			t.Errorf("audiobitrate %d: %q does not name the field", br, e.Error.Message)
		}
	}

	// An ingest that refuses the publish: 502 with the ingest's code.
	h.rec.rejectName("badkey", "NetStream.Publish.BadName")
	e = h.expectError("POST", path, map[string]any{"transcodingTargets": map[string]any{"output": h.ingestURL() + "/badkey"}}, 502, "INGEST_REJECTED")
	if !strings.Contains(e.Error.Message, "NetStream.Publish.BadName") {
		t.Errorf("rejection message lacks the ingest's code: %q", e.Error.Message)
	}
	if strings.Contains(e.Error.Message, "badkey") {
		t.Errorf("rejection message leaks the stream key: %q", e.Error.Message)
	}

	// Nothing listens: 502 INGEST_UNREACHABLE, well before the timeout.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := ln.Addr().String()
	ln.Close()
	start := time.Now()
	h.expectError("POST", path, map[string]any{"transcodingTargets": map[string]any{"output": "rtmp://" + closedPort + "/live/key"}}, 502, "INGEST_UNREACHABLE")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("unreachable ingest took %v to report", d)
	}
	// Nothing was left running by the failures.
	h.expectError("GET", path, nil, 404, "NOT_BROADCASTING")
	h.expectError("DELETE", path, nil, 404, "NOT_BROADCASTING")

	// A second broadcast on a live stream.
	if st, raw := h.call("POST", path, map[string]any{"transcodingTargets": map[string]any{"output": h.ingestURL() + "/second"}}, nil); st != http.StatusCreated {
		t.Fatalf("broadcast: %d %s", st, raw)
	}
	h.expectError("POST", path, map[string]any{"transcodingTargets": map[string]any{"output": h.ingestURL() + "/third"}}, 409, "ALREADY_BROADCASTING")

	// Unknown ids.
	h.expectError("GET", "/v1/streams/st_nope", nil, 404, "NOT_FOUND")
	h.expectError("DELETE", "/v1/streams/st_nope", nil, 404, "NOT_FOUND")
	h.expectError("POST", "/v1/streams/st_nope/broadcast", map[string]any{"transcodingTargets": map[string]any{"output": h.ingestURL() + "/x"}}, 404, "NOT_FOUND")
	h.expectError("DELETE", "/whip/st_nope", nil, 404, "NOT_FOUND")

	// The bystander kept streaming throughout.
	if after := h.waitFrames("bystander", framesBefore+30, 5*time.Second); after < framesBefore+30 {
		t.Errorf("bystander frames %d -> %d: it was disturbed", framesBefore, after)
	}
	var sv streamView
	h.call("GET", "/v1/streams/"+bystander, nil, &sv)
	if sv.State != "live" || sv.Broadcast == nil || sv.Broadcast.Targets[0].State != "live" {
		t.Errorf("bystander: state %s, broadcast %+v", sv.State, sv.Broadcast)
	}
}

// TestCloseFreesEverything: deleting a live stream ends every goroutine it
// started (pion's, the writers', the timers'). Not parallel: it counts
// every goroutine of the process, so it runs alone, before the parallel
// tests start.
func TestCloseFreesEverything(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithCancel(context.Background())
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"), Loop: true})
	if st, raw := h.call("POST", "/v1/streams/"+id+"/broadcast", map[string]any{"targets": []any{
		map[string]any{"output": h.ingestURL() + "/a"}, map[string]any{"output": h.ingestURL() + "/b"}}}, nil); st != http.StatusCreated {
		t.Fatalf("broadcast: %d %s", st, raw)
	}
	if h.waitFrames("a", 1, 5*time.Second) == 0 {
		t.Fatal("no frames reached the ingest")
	}
	if st, _ := h.call("DELETE", "/v1/streams/"+id, nil, nil); st != http.StatusNoContent {
		t.Fatalf("delete: %d", st)
	}
	cancel()
	pub.Wait()
	_ = pub.Close()
	h.expectError("GET", "/v1/streams/"+id, nil, 404, "NOT_FOUND")
	http.DefaultClient.CloseIdleConnections()
	// The harness's ingest outlives the stream; TestMain checks it at the end.
	goleak.VerifyNone(t, before, goleak.IgnoreAnyFunction("github.com/castbridge/castbridge/transmux/rtmp/ingest.(*Server).Serve.func1"))
}

func (h *harness) videoFrames(stream string) int { return h.rec.videoFrames(stream) }

// waitFrames waits until the harness's ingest has n video frames of stream
// and returns how many it has.
func (h *harness) waitFrames(stream string, n int, timeout time.Duration) int {
	return h.rec.waitFrames(stream, n, timeout)
}

// videoFrames counts the coded video frames of stream.
func (r *recorder) videoFrames(stream string) int {
	_, msgs := r.get(stream)
	n := 0
	for _, m := range msgs {
		if m.msg.Type == 9 && len(m.msg.Body) > 1 && m.msg.Body[1] == 1 {
			n++
		}
	}
	return n
}

// waitFrames waits until the ingest has n video frames of stream and
// returns how many it has.
func (r *recorder) waitFrames(stream string, n int, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		got := r.videoFrames(stream)
		if got >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkReceptionReports checks the receiver reports a publisher got over a
// lossy run of ~7 s: about one per second per track, sequence numbers moving
// forward, jitter measured, the last SR echoed, and Opus loss (not NACKed)
// reported.
func checkReceptionReports(t *testing.T, reps []gatewaytest.ReceivedReport) {
	t.Helper()
	byKind := map[string][]gatewaytest.ReceivedReport{}
	for _, r := range reps {
		byKind[r.Kind] = append(byKind[r.Kind], r)
	}
	for _, kind := range []string{"video", "audio"} {
		rs := byKind[kind]
		if len(rs) < 4 || len(rs) > 10 {
			t.Errorf("%s: %d receiver reports in ~7 s, want about one a second", kind, len(rs))
			continue
		}
		last := rs[len(rs)-1]
		t.Logf("%s: %d reports; last: highest seq %d, lost %d, fraction %d/256, jitter %d, LSR %x, DLSR %d/65536 s",
			kind, len(rs), last.LastSequenceNumber, last.TotalLost, last.FractionLost, last.Jitter, last.LastSenderReport, last.Delay)
		for i := 1; i < len(rs); i++ {
			if rs[i].LastSequenceNumber <= rs[i-1].LastSequenceNumber {
				t.Errorf("%s: highest sequence number went %d -> %d", kind, rs[i-1].LastSequenceNumber, rs[i].LastSequenceNumber)
			}
			if gap := rs[i].At.Sub(rs[i-1].At); gap < 800*time.Millisecond || gap > 1500*time.Millisecond {
				t.Errorf("%s: reports %v apart", kind, gap)
			}
		}
		if last.Jitter == 0 || last.LastSenderReport == 0 || last.Delay > 2*65536 {
			t.Errorf("%s: last report %+v: want jitter, and the last SR echoed within 2 s", kind, last.ReceptionReport)
		}
	}
	if a := byKind["audio"]; len(a) > 0 && a[len(a)-1].TotalLost == 0 {
		t.Error("audio: the relay dropped Opus packets but no loss was reported")
	}
}
