package e2e

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/transmux/format/flv"
)

// Real ingests read the gateway's FLV strictly: tags in timestamp order
// across tracks (MediaMTX discards what comes "too late"), Opus timelines
// without holes, the onMetaData keys FFmpeg writes. These tests publish the
// test clip with audio through the gateway to them and read back what they
// recorded.

// broadcastTo starts a broadcast to targets and returns each output's
// target id.
func (h *harness) broadcastTo(id string, targets ...map[string]any) map[string]string {
	h.t.Helper()
	var bv broadcastView
	if st, raw := h.call("POST", "/v1/streams/"+id+"/broadcast", map[string]any{"targets": targets}, &bv); st != http.StatusCreated {
		h.t.Fatalf("start broadcast: %d %s", st, raw)
	}
	ids := map[string]string{}
	for i, tg := range bv.Targets {
		ids[targets[i]["output"].(string)] = tg.ID
	}
	return ids
}

// framesSent is each target's video frame count from the stream's stats.
func (h *harness) framesSent(id string) map[string]int {
	h.t.Helper()
	var st struct {
		Targets []struct {
			ID            string `json:"id"`
			FramesSent    int    `json:"framesSent"`
			FramesDropped int    `json:"framesDropped"`
		} `json:"targets"`
	}
	if code, raw := h.call("GET", "/v1/streams/"+id+"/stats", nil, &st); code != http.StatusOK {
		h.t.Fatalf("stats: %d %s", code, raw)
	}
	out := map[string]int{}
	for _, tg := range st.Targets {
		if tg.FramesDropped != 0 {
			h.t.Errorf("target %s dropped %d frames", tg.ID, tg.FramesDropped)
		}
		out[tg.ID] = tg.FramesSent
	}
	return out
}

// maxBackStep is the largest step back in timestamp between consecutive
// audio, video and data tags of a connection.
func maxBackStep(msgs []received) int64 {
	var worst int64
	var last int64 = -1
	for _, r := range msgs {
		switch r.msg.Type {
		case flv.TagAudio, flv.TagVideo, flv.TagScript:
		default:
			continue
		}
		ts := int64(r.msg.Timestamp)
		if last >= 0 && last-ts > worst {
			worst = last - ts
		}
		last = ts
	}
	return worst
}

// maxBackStepPackets is the same over a recording's packets (DTS, file
// order).
func maxBackStepPackets(pkts []gatewaytest.StreamPacket) float64 {
	var worst float64
	for i := 1; i < len(pkts); i++ {
		worst = max(worst, pkts[i-1].DTSMillis-pkts[i].DTSMillis)
	}
	return worst
}

// checkVideoSpacing checks a recording's video packets are 30 fps apart
// (33-34 ms, across the publisher's timestamp restarts: none frozen, none
// leaping) with a keyframe at least every 2.2 s; it returns the count.
func checkVideoSpacing(t *testing.T, name string, pkts []gatewaytest.StreamPacket) int {
	t.Helper()
	n, lastKey, prev := 0, math.NaN(), math.NaN()
	bad := 0
	for _, p := range pkts {
		if p.CodecType != "video" {
			continue
		}
		n++
		if d := p.DTSMillis - prev; !math.IsNaN(prev) && (d < 32.5 || d > 34.5) {
			if bad++; bad <= 5 {
				t.Errorf("%s: video packet %d at %.1f ms, %.1f ms after the one before", name, n, p.DTSMillis, d)
			}
		}
		prev = p.DTSMillis
		if p.Keyframe {
			if gap := p.DTSMillis - lastKey; gap > 2200 {
				t.Errorf("%s: keyframe gap %.0f ms at %.0f ms", name, gap, p.DTSMillis)
			}
			lastKey = p.DTSMillis
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d video packets off the 30 fps spacing", name, bad)
	}
	return n
}

// waitListen waits until something listens on the TCP port on 127.0.0.1
// (by /proc/net/tcp: a one-shot ingest must not be connected to).
func waitListen(t *testing.T, port int, exited <-chan struct{}) {
	t.Helper()
	want := fmt.Sprintf("0100007F:%04X 00000000:0000 0A", port)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if raw, err := os.ReadFile("/proc/net/tcp"); err == nil && strings.Contains(string(raw), want) {
			return
		}
		select {
		case <-exited:
			t.Fatal("the ingest exited before listening")
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("nothing listens on 127.0.0.1:%d", port)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestFFmpegListenIngest: 7 s of H.264 + Opus from a publisher that
// restarts its RTP timestamps at 0 when its 5 s material loops (sequence
// numbers go on, as aiortc's player does), into `ffmpeg -listen 1 -c copy
// out.flv` (FFmpeg's strict FLV demuxer) and the in-process ingest. The
// recording has H.264 and AAC, every frame the target sent, audio as long
// as the video, packets in timestamp order across streams, video 30 fps
// apart across the restart, keyframes every 2 s, no decode errors; the
// in-process ingest sees the connection's tags in order and onMetaData
// with FFmpeg's keys.
func TestFFmpegListenIngest(t *testing.T) {
	parallel(t, heavy)
	ffmpeg := gatewaytest.NeedTool(t, "ffmpeg")
	gatewaytest.NeedTool(t, "ffprobe")
	dir := t.TempDir()
	out := filepath.Join(dir, "out.flv")
	port := freePort(t)
	url := fmt.Sprintf("rtmp://127.0.0.1:%d/live/x", port)
	cmd := exec.Command(ffmpeg, "-nostdin", "-hide_banner", "-v", "warning", "-listen", "1", "-i", url, "-c", "copy", "-y", out)
	var ffLog gatewaytest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &ffLog, &ffLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	waitListen(t, port, exited)

	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"),
		Loop: true, RestartTimestamps: true})
	mirror := h.ingestURL() + "/ffmirror"
	ids := h.broadcastTo(id, map[string]any{"output": url}, map[string]any{"output": mirror})
	time.Sleep(7 * time.Second)
	cancel()
	pub.Wait()
	time.Sleep(400 * time.Millisecond) // the last frames through
	if st, raw := h.call("DELETE", "/v1/streams/"+id+"/broadcast", nil, nil); st != http.StatusOK {
		t.Fatalf("stop broadcast: %d %s", st, raw)
	}
	// Counted after the stop: it writes out what the writer still held
	// back for ordering, and joins the writer.
	sent := h.framesSent(id)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("ffmpeg did not finish after the publish ended: %s", ffLog.String())
	}
	if s := ffLog.String(); strings.Contains(s, "Non-monotonic") || strings.Contains(s, "out of order") {
		t.Errorf("ffmpeg complained about timestamps:\n%s", s)
	}

	// What the gateway wrote on one connection.
	_, msgs := h.rec.get("ffmirror")
	if back := maxBackStep(msgs); back != 0 {
		t.Errorf("the in-process ingest saw timestamps step back by up to %d ms", back)
	}
	checkFFmpegMetadata(t, msgs)

	pr, err := gatewaytest.Probe(out)
	if err != nil {
		t.Fatalf("%v (ffmpeg: %s)", err, ffLog.String())
	}
	v, a := pr.Video(), pr.Audio()
	if v == nil || v.CodecName != "h264" || v.Width != 1280 || v.Height != 720 {
		t.Fatalf("recording video: %+v", v)
	}
	if a == nil || a.CodecName != "aac" || a.SampleRate != 48000 || a.Channels != 2 {
		t.Fatalf("recording audio: %+v", a)
	}
	if want := sent[ids[url]]; v.NbReadFrames != want || want < 190 {
		t.Errorf("recording has %d video frames, the target sent %d (7 s at 30 fps is 210)", v.NbReadFrames, want)
	}
	pkts, err := gatewaytest.ProbePackets(out)
	if err != nil {
		t.Fatal(err)
	}
	if back := maxBackStepPackets(pkts); back != 0 {
		t.Errorf("recording's packets step back by up to %.1f ms across streams", back)
	}
	checkVideoSpacing(t, "ffmpeg recording", pkts)
	var vEnd, aStart, aEnd float64
	aStart = math.NaN()
	for _, p := range pkts {
		switch p.CodecType {
		case "video":
			vEnd = p.DTSMillis + 1000.0/30
		case "audio":
			if math.IsNaN(aStart) {
				aStart = p.DTSMillis
			}
			aEnd = p.DTSMillis + 1024000.0/48000
		}
	}
	aDur := float64(a.NbReadFrames) * 1024 / 48
	if math.Abs(aDur-(aEnd-aStart)) > 25 {
		t.Errorf("%d AAC frames are %.0f ms, their timestamps span %.0f ms: a hole", a.NbReadFrames, aDur, aEnd-aStart)
	}
	if math.Abs(aEnd-vEnd) > 100 || aStart > 30 {
		t.Errorf("audio %.0f..%.0f ms, video 0..%.0f ms: want the same span", aStart, aEnd, vEnd)
	}
	if errs, err := gatewaytest.DecodeErrors(out); err != nil || errs != "" {
		t.Errorf("decoding the recording: %v %s", err, errs)
	}
	t.Logf("ffmpeg -listen recording: %d video frames (target sent %d), %d AAC frames, audio %.0f..%.0f ms, video ..%.0f ms; max step back %d ms",
		v.NbReadFrames, sent[ids[url]], a.NbReadFrames, aStart, aEnd, vEnd, maxBackStep(msgs))
}

// checkFFmpegMetadata checks the first onMetaData an ingest got has the
// keys FFmpeg's FLV muxer writes, with the stream's values.
func checkFFmpegMetadata(t *testing.T, msgs []received) {
	t.Helper()
	var md map[string]any
	for _, r := range msgs {
		if r.msg.Type == flv.TagScript && r.msg.Handler == "onMetaData" {
			md = asMap(t, r.msg.Values)
			break
		}
	}
	if md == nil {
		t.Fatal("no onMetaData")
	}
	want := map[string]any{"duration": 0.0, "filesize": 0.0, "width": 1280.0, "height": 720.0, "framerate": 30.0,
		"videocodecid": 7.0, "audiocodecid": 10.0, "audiosamplerate": 48000.0, "audiosamplesize": 16.0,
		"stereo": true, "audiodatarate": 128.0, "encoder": "castbridge"}
	for k, v := range want {
		if md[k] != v {
			t.Errorf("onMetaData %s = %#v, want %#v", k, md[k], v)
		}
	}
	// The clip is ~2.5 Mbit/s; no videobitrate set: what was received.
	if r, ok := md["videodatarate"].(float64); !ok || r < 500 || r > 6000 {
		t.Errorf("onMetaData videodatarate = %#v, want the received kbit/s", md["videodatarate"])
	}
}

// TestMediaMTXIngest: 7 s of H.264 + Opus into MediaMTX (its RTMP server,
// recording fMP4 in segments that roll over at each keyframe), once with
// AAC and once with E-RTMP Opus. MediaMTX discards nothing as too late,
// its recordings hold every video frame the targets sent, audio as long as
// the video, decode without errors, and the Opus track's packets are 20 ms
// apart throughout.
func TestMediaMTXIngest(t *testing.T) {
	parallel(t, heavy)
	gatewaytest.NeedTool(t, "ffprobe")
	dir := t.TempDir()
	mtx := gatewaytest.StartMediaMTX(t, dir, "fmp4", time.Second)
	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"), Loop: true})
	aacURL, opusURL := "rtmp://"+mtx.Addr+"/live/aac", "rtmp://"+mtx.Addr+"/live/opus"
	ids := h.broadcastTo(id, map[string]any{"output": aacURL}, map[string]any{"output": opusURL, "audiocodec": "opus"}, map[string]any{"output": h.ingestURL() + "/mtxmirror"})
	time.Sleep(7 * time.Second)
	cancel()
	pub.Wait()
	time.Sleep(400 * time.Millisecond)
	if st, raw := h.call("DELETE", "/v1/streams/"+id+"/broadcast", nil, nil); st != http.StatusOK {
		t.Fatalf("stop broadcast: %d %s", st, raw)
	}
	// Counted after the stop, as in the FFmpeg test: the AAC target holds
	// its last video frames for the audio of their time (up to holdMax),
	// which a publisher that has gone never sends; the stop writes them.
	// Read before it, the count missed those on a slow machine (CI: the
	// recording held 202 frames of 201 "sent").
	sent := h.framesSent(id)
	time.Sleep(500 * time.Millisecond) // MediaMTX closes the segments

	if _, mm := h.rec.get("mtxmirror"); maxBackStep(mm) != 0 {
		t.Errorf("the in-process ingest saw timestamps step back by up to %d ms", maxBackStep(mm))
	}
	if n := strings.Count(mtx.Log(), "too late"); n != 0 {
		t.Errorf("MediaMTX discarded samples %d times as too late", n)
	}
	for _, tc := range []struct {
		path, url, codec string
	}{{"live/aac", aacURL, "aac"}, {"live/opus", opusURL, "opus"}} {
		segs := mtx.Recordings(tc.path)
		if len(segs) < 3 {
			t.Errorf("%s: %d segments recorded, want one per keyframe (2 s) of 7 s", tc.path, len(segs))
			continue
		}
		frames, aFrames := 0, 0
		var vDur, aDur float64
		var per []string
		opusSteps := map[float64]int{}
		for _, seg := range segs {
			pr, err := gatewaytest.Probe(seg)
			if err != nil {
				t.Fatal(err)
			}
			v, a := pr.Video(), pr.Audio()
			if v == nil || v.CodecName != "h264" || a == nil || a.CodecName != tc.codec || a.SampleRate != 48000 {
				t.Fatalf("%s: segment %s: video %+v, audio %+v", tc.path, filepath.Base(seg), v, a)
			}
			frames += v.NbReadFrames
			aFrames += a.NbReadFrames
			pkts, err := gatewaytest.ProbePackets(seg)
			if err != nil {
				t.Fatal(err)
			}
			vs, ve, as, ae := math.NaN(), 0.0, math.NaN(), 0.0
			prevA := math.NaN()
			for _, p := range pkts {
				if p.CodecType == "video" {
					if math.IsNaN(vs) {
						vs = p.DTSMillis
					}
					ve = p.DTSMillis + 1000.0/30
					continue
				}
				if math.IsNaN(as) {
					as = p.DTSMillis
				}
				step := 1024000.0 / 48000
				if tc.codec == "opus" {
					step = 20
					if !math.IsNaN(prevA) {
						opusSteps[math.Round(p.PTSMillis-prevA)]++
					}
					prevA = p.PTSMillis
				}
				ae = p.DTSMillis + step
			}
			vDur += ve - vs
			aDur += ae - as
			per = append(per, fmt.Sprintf("%d frames/%d pkts v %.0f..%.0f a %.0f..%.0f", v.NbReadFrames, len(pkts), vs, ve, as, ae))
			if errs, err := gatewaytest.DecodeErrors(seg); err != nil || errs != "" {
				t.Errorf("%s: decoding %s: %v %s", tc.path, filepath.Base(seg), err, errs)
			}
		}
		// MediaMTX's recorder writes a sample when the next of its track
		// comes: the very last frame stays unwritten.
		if want := sent[ids[tc.url]]; frames < want-1 || frames > want || want < 190 {
			t.Errorf("%s: recordings hold %d video frames, the target sent %d", tc.path, frames, want)
		}
		if math.Abs(aDur-vDur) > 60*float64(len(segs)) {
			t.Errorf("%s: audio %.0f ms, video %.0f ms over %d segments", tc.path, aDur, vDur, len(segs))
		}
		if tc.codec == "opus" {
			for step, n := range opusSteps {
				if step != 20 {
					t.Errorf("%s: %d Opus packets %.0f ms after the one before, want 20", tc.path, n, step)
				}
			}
		}
		t.Logf("MediaMTX %s: %d segments, %d video frames (sent %d), %d audio frames, video %.0f ms, audio %.0f ms, audio steps %v; segments %s",
			tc.path, len(segs), frames, sent[ids[tc.url]], aFrames, vDur, aDur, opusSteps, strings.Join(per, "; "))
	}
	t.Logf("MediaMTX 'too late' lines: %d", strings.Count(mtx.Log(), "too late"))
}
