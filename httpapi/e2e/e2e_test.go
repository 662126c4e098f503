package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/transmux/format/mediafile"
)

// videoTag is a parsed FLV video tag body as the ingest received it.
type videoTag struct {
	ts        uint32
	keyframe  bool
	seqHeader bool
	digest    uint64
	at        time.Time
}

func parseVideo(t *testing.T, r received) videoTag {
	t.Helper()
	b := r.msg.Body
	if len(b) < 5 {
		t.Fatalf("video tag of %d bytes", len(b))
	}
	if b[0]&0x0f != 7 {
		t.Fatalf("video codec id %d, want 7 (AVC)", b[0]&0x0f)
	}
	vt := videoTag{ts: r.msg.Timestamp, keyframe: b[0]>>4 == 1, seqHeader: b[1] == 0, at: r.at}
	if vt.seqHeader {
		return vt
	}
	var nalus [][]byte
	for p := b[5:]; len(p) > 0; {
		if len(p) < 4 {
			t.Fatalf("truncated AVCC length")
		}
		n := int(binary.BigEndian.Uint32(p))
		if n == 0 || n > len(p)-4 {
			t.Fatalf("bad AVCC NALU length %d of %d", n, len(p)-4)
		}
		nalus = append(nalus, p[4:4+n])
		p = p[4+n:]
	}
	vt.digest = mediafile.SliceDigest(nalus)
	return vt
}

func TestMain(m *testing.M) {
	setUpSchedule()
	// The leak check runs when every test, parallel or not, has ended.
	goleak.VerifyTestMain(m,
		// pion's mDNS and the net/http keep-alive of the shared client are
		// process-wide, not owned by a stream.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// TestPublishToInProcessIngest is the spine end to end: a pion publisher
// sends real H.264 over UDP through the gateway's API into a go-rtmp ingest.
func TestPublishToInProcessIngest(t *testing.T) {
	parallel(t, light)
	h := newHarness(t, harnessOptions{keyframeInterval: 2 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{
		VideoFile:             testdata("video.h264"),
		AudioFile:             testdata("audio.ogg"),
		SeparateParameterSets: true, // like OBS
		Loop:                  true,
	})

	var bv broadcastView
	started := time.Now()
	st, raw := h.call("POST", "/v1/streams/"+id+"/broadcast", map[string]any{
		"transcodingTargets": map[string]any{
			"output": h.ingestURL(), "streamname": "e2e",
			"rtmpconnectinfo": map[string]any{"key1": "value1", "key2": 7.5, "key3": false},
		}}, &bv)
	if st != http.StatusCreated {
		t.Fatalf("start broadcast: %d %s", st, raw)
	}
	if len(bv.Targets) != 1 || (bv.Targets[0].State != "live" && bv.Targets[0].State != "connecting") {
		t.Fatalf("broadcast targets: %s", raw)
	}
	if strings.Contains(string(raw), "e2e") {
		t.Errorf("the response echoes the stream name: %s", raw)
	}

	time.Sleep(6 * time.Second) // past the material's own 4.5 s keyframe spacing
	cancel()                    // the publisher stops sending
	pub.Wait()
	time.Sleep(300 * time.Millisecond) // let the last frame through
	var stats struct {
		Targets []struct {
			FramesSent   int     `json:"framesSent"`
			LatencyP50Ms float64 `json:"latencyP50Ms"`
			LatencyP99Ms float64 `json:"latencyP99Ms"`
		} `json:"targets"`
	}
	h.call("GET", "/v1/streams/"+id+"/stats", nil, &stats)
	if len(stats.Targets) == 1 {
		t.Logf("gateway: last RTP packet of a frame -> FLV tag written: p50 %.2f ms, p99 %.2f ms over %d frames",
			stats.Targets[0].LatencyP50Ms, stats.Targets[0].LatencyP99Ms, stats.Targets[0].FramesSent)
	}
	if st, raw := h.call("DELETE", "/v1/streams/"+id+"/broadcast", nil, &bv); st != http.StatusOK || bv.State != "stopped" {
		t.Fatalf("stop broadcast: %d %s", st, raw)
	}
	if st, _ := h.call("DELETE", "/v1/streams/"+id, nil, nil); st != http.StatusNoContent {
		t.Fatalf("delete stream: %d", st)
	}

	info, msgs := h.rec.get("e2e")
	for _, m := range msgs {
		if m.msg.Type == 9 && len(m.msg.Body) > 1 && m.msg.Body[1] == 1 { // an AVC NALU tag
			t.Logf("pion publisher: broadcast start -> first video tag %v", m.at.Sub(started).Round(time.Millisecond))
			break
		}
	}
	// connect carries the rtmpconnectinfo keys and values.
	for k, want := range map[string]any{"key1": "value1", "key2": 7.5, "key3": false} {
		if got := info.Connect[k]; got != want {
			t.Errorf("connect[%s] = %#v, want %#v", k, got, want)
		}
	}
	if info.App != "live" {
		t.Errorf("app %q", info.App)
	}

	var video []videoTag
	var meta map[string]any
	for _, r := range msgs {
		switch r.msg.Type {
		case 18:
			if meta == nil && strings.Contains(r.msg.Handler, "onMetaData") {
				meta = asMap(t, r.msg.Values)
				if len(video) > 0 {
					t.Errorf("onMetaData after the first video tag")
				}
			}
		case 9:
			video = append(video, parseVideo(t, r))
		}
	}
	if meta == nil {
		t.Fatal("no onMetaData")
	}
	for k, want := range map[string]float64{"width": 1280, "height": 720, "videocodecid": 7} {
		if got, _ := meta[k].(float64); got != want {
			t.Errorf("onMetaData %s = %v, want %v", k, meta[k], want)
		}
	}
	if fr, _ := meta["framerate"].(float64); math.Abs(fr-30) > 1 {
		t.Errorf("onMetaData framerate = %v, want 30", meta["framerate"])
	}
	if enc, _ := meta["encoder"].(string); !strings.Contains(enc, "castbridge") {
		t.Errorf("onMetaData encoder = %v", meta["encoder"])
	}
	if len(video) < 2 || !video[0].seqHeader {
		t.Fatalf("first video tag is not the AVC sequence header (%d video tags)", len(video))
	}
	frames := video[1:]
	if !frames[0].keyframe {
		t.Fatal("first frame is not a keyframe")
	}

	// Frames out equal frames sent from the first IDR on, in order.
	sent := pub.Sent()
	// The material loops, so the same IDR may have been sent more than once:
	// take the last one whose sending began before the ingest received it
	// (not ended: the publisher can be descheduled after its last write
	// while the gateway already delivers the frame).
	first := -1
	for i, s := range sent {
		if s.IDR && s.Digest == frames[0].digest && s.FirstPacketAt.Before(frames[0].at) {
			first = i
		}
	}
	if first < 0 {
		t.Fatal("the first frame at the ingest is none the publisher sent as an IDR")
	}
	want := sent[first:]
	var got []videoTag
	for _, v := range frames {
		if !v.seqHeader {
			got = append(got, v)
		}
	}
	t.Logf("frames sent %d (from first IDR %d), frames at ingest %d, publisher PLIs %d", len(sent), len(want), len(got), pub.PLIs())
	if len(got) != len(want) {
		t.Fatalf("ingest got %d frames, publisher sent %d after the first IDR", len(got), len(want))
	}
	var lat []time.Duration
	var lastKey uint32
	for i := range got {
		if got[i].digest != want[i].Digest {
			t.Fatalf("frame %d differs from the one sent", i)
		}
		if got[i].keyframe != want[i].IDR {
			t.Errorf("frame %d keyframe flag %v, sent IDR %v", i, got[i].keyframe, want[i].IDR)
		}
		// Timestamps follow the source's frame times within 1 ms (from the
		// first frame's: the connection may start with the audio frame
		// that covers it, up to 24 ms before).
		srcMs := float64(want[i].PTS-want[0].PTS) / float64(time.Millisecond)
		if got[0].ts > 24 {
			t.Fatalf("the first frame at %d ms", got[0].ts)
		}
		if d := math.Abs(float64(got[i].ts-got[0].ts) - srcMs); d > 1 {
			t.Errorf("frame %d: ts %d ms, source %.2f ms", i, got[i].ts, srcMs)
		}
		if i > 0 && got[i].ts < got[i-1].ts {
			t.Errorf("timestamp went back at frame %d: %d < %d", i, got[i].ts, got[i-1].ts)
		}
		// A keyframe at least every keyframe-interval plus one frame.
		if got[i].keyframe {
			if gap := got[i].ts - lastKey; i > 0 && gap > 2000+34 {
				t.Errorf("keyframe gap %d ms at frame %d", gap, i)
			}
			lastKey = got[i].ts
		}
		lat = append(lat, got[i].at.Sub(want[i].LastPacketAt))
	}
	if end := got[len(got)-1].ts; end-lastKey > 2000+34 {
		t.Errorf("no keyframe in the last %d ms", end-lastKey)
	}
	if pub.PLIs() == 0 {
		t.Error("the gateway sent no PLI")
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("publisher last packet -> ingest receive latency: p50 %v p99 %v max %v",
		lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
}

func asMap(t *testing.T, v any) map[string]any {
	t.Helper()
	switch m := v.(type) {
	case map[string]any:
		return m
	case []any:
		for _, e := range m {
			if mm, ok := e.(map[string]any); ok {
				return mm
			}
		}
	}
	t.Fatalf("data message values %T %v", v, v)
	return nil
}

// TestPublishToNginx pushes to nginx-rtmp (recording to FLV) and the
// in-process ingest at once; ffprobe reads the recording.
func TestPublishToNginx(t *testing.T) {
	parallel(t, light)
	dir := t.TempDir()
	nginx := gatewaytest.StartNginx(t, dir)
	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// NearWrap: the RTP timestamps wrap at 2^32 a second into the stream.
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), Loop: true, NearWrap: true})

	st, raw := h.call("POST", "/v1/streams/"+id+"/broadcast", map[string]any{"targets": []map[string]any{
		{"output": "rtmp://" + nginx + "/live/nginxrec"},
		{"output": h.ingestURL() + "/mirror"},
	}}, nil)
	if st != http.StatusCreated {
		t.Fatalf("start broadcast: %d %s", st, raw)
	}
	time.Sleep(5 * time.Second)
	cancel()
	pub.Wait()
	time.Sleep(300 * time.Millisecond)
	if st, raw := h.call("DELETE", "/v1/streams/"+id+"/broadcast", nil, nil); st != http.StatusOK {
		t.Fatalf("stop broadcast: %d %s", st, raw)
	}
	_, msgs := h.rec.get("mirror")
	var frames int
	var firstTS, lastTS uint32
	for _, r := range msgs {
		if r.msg.Type == 9 && r.msg.Body[1] == 1 {
			if frames == 0 {
				firstTS = r.msg.Timestamp
			}
			lastTS = r.msg.Timestamp
			frames++
		}
	}

	path := filepath.Join(dir, "nginxrec.flv")
	waitFile(t, path)
	pr, err := gatewaytest.Probe(path)
	if err != nil {
		t.Fatal(err)
	}
	v := pr.Video()
	if v == nil || v.CodecName != "h264" || v.Width != 1280 || v.Height != 720 {
		t.Fatalf("recording video: %+v", v)
	}
	if v.NbReadFrames != frames {
		t.Errorf("nginx recording has %d frames, the gateway sent %d", v.NbReadFrames, frames)
	}
	wantDur := float64(lastTS-firstTS)/1000 + 1.0/30
	if math.Abs(pr.Duration-wantDur) > 0.1 {
		t.Errorf("recording duration %.3f s, want %.3f s", pr.Duration, wantDur)
	}
	if errs, err := gatewaytest.DecodeErrors(path); err != nil || errs != "" {
		t.Errorf("decoding the recording: %v %s", err, errs)
	}
	// nginx records tags as they come: the silent AAC and the video are
	// interleaved in timestamp order.
	pkts, err := gatewaytest.ProbePackets(path)
	if err != nil {
		t.Fatal(err)
	}
	audio := 0
	for _, p := range pkts {
		if p.CodecType == "audio" {
			audio++
		}
	}
	if back := maxBackStepPackets(pkts); back != 0 || audio == 0 {
		t.Errorf("nginx recording: %d audio packets, timestamps step back by up to %.1f ms across streams", audio, back)
	}
	t.Logf("nginx recording: %d frames, %.3f s, %d audio packets", v.NbReadFrames, pr.Duration, audio)
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	for i := 0; i < 50 && !fileExists(path); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	// nginx-rtmp finalizes the file when the publisher goes away.
	time.Sleep(200 * time.Millisecond)
}

// TestAnswerAdvertisesICEIPs: with --ice-ips 127.0.0.1 the answer's only
// host candidate is that address on the one ICE port.
func TestAnswerAdvertisesICEIPs(t *testing.T) {
	parallel(t, light)
	h := newHarness(t, harnessOptions{})
	pub, sv := h.offerWithBroadcast(context.Background(), map[string]any{"output": h.ingestURL() + "/ice"})
	_ = pub
	var cands []string
	for _, l := range strings.Split(sv.SDP, "\r\n") {
		if strings.HasPrefix(l, "a=candidate:") {
			cands = append(cands, l)
		}
	}
	want := fmt.Sprintf(" 127.0.0.1 %d typ host", h.m.ICEPort())
	if len(cands) == 0 {
		t.Fatal("the answer has no candidates (it must be non-trickle)")
	}
	for _, c := range cands {
		if !strings.Contains(c, want) {
			t.Errorf("candidate %q, want only%s", c, want)
		}
	}
	h.call("DELETE", "/v1/streams/"+sv.ID, nil, nil)
}
