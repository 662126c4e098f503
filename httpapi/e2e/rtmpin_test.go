package e2e

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"

	"math"

	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/gateway/rtmpout"
	"github.com/castbridge/castbridge/transmux/format/flv"

	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

// RTMP in: publishes to the gateway's built-in ingest with a relay key
// become streams broadcasting to the relay's targets, their frames passed
// through as they came.

// rtmpInKey is the relay key of these tests; it must never show in a view
// or a log line.
const rtmpInKey = "sk-live-0f3c9a7e5b"

// flvTag is one tag of an FLV file.
type flvTag struct {
	typ  uint8
	ts   uint32
	body []byte
}

// makeFLV encodes seconds of a 640x360 30 fps test pattern with B-frames
// (libx264 -bf 2, a keyframe every 2 s, as OBS's x264 defaults) and a
// 440 Hz tone in AAC, as an FLV file.
func makeFLV(t *testing.T, seconds int) string {
	t.Helper()
	gatewaytest.NeedTool(t, "ffmpeg")
	out := filepath.Join(t.TempDir(), "in.flv")
	cmd := exec.Command("ffmpeg", append([]string{"-nostdin", "-hide_banner", "-loglevel", "error"},
		append(ffmpegSourceArgs(seconds), "-f", "flv", out)...)...)
	if raw, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, raw)
	}
	return out
}

// ffmpegSourceArgs are the inputs and encoders of the publishers here.
func ffmpegSourceArgs(seconds int) []string {
	return []string{"-f", "lavfi", "-i", "testsrc=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", strconv.Itoa(seconds), "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "60",
		"-c:a", "aac", "-b:a", "128k", "-ar", "48000"}
}

// readFLV reads an FLV file's tags.
func readFLV(t *testing.T, path string) []flvTag {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < 13 || string(raw[:3]) != "FLV" {
		t.Fatalf("%s: not an FLV file", path)
	}
	var tags []flvTag
	for p := raw[binary.BigEndian.Uint32(raw[5:9])+4:]; len(p) >= 11; {
		n := int(p[1])<<16 | int(p[2])<<8 | int(p[3])
		if len(p) < 11+n+4 {
			break
		}
		ts := uint32(p[4])<<16 | uint32(p[5])<<8 | uint32(p[6]) | uint32(p[7])<<24
		tags = append(tags, flvTag{typ: p[0], ts: ts, body: p[11 : 11+n]})
		p = p[11+n+4:]
	}
	return tags
}

// pushTags publishes tags through an rtmppush publisher at their own pace
// (from their first timestamp, at start), returning the time the first
// video keyframe that is not a sequence header was written.
func pushTags(t *testing.T, pub *rtmppush.Publisher, tags []flvTag, start time.Time) time.Time {
	t.Helper()
	firstKey, err := pushTagsErr(pub, tags, start)
	if err != nil {
		t.Errorf("publishing: %v", err)
	}
	return firstKey
}

// pushTagsErr is pushTags returning the first write error.
func pushTagsErr(pub *rtmppush.Publisher, tags []flvTag, start time.Time) (time.Time, error) {
	var firstKey time.Time
	base := tags[0].ts
	for _, tg := range tags {
		if d := time.Until(start.Add(time.Duration(tg.ts-base) * time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
		var err error
		switch tg.typ {
		case flv.TagVideo:
			err = pub.WriteVideo(tg.ts, tg.body)
			if vt, perr := flv.ParseVideoTag(tg.body); perr == nil && vt.Keyframe() && !vt.SequenceStart() && firstKey.IsZero() {
				firstKey = time.Now()
			}
		case flv.TagAudio:
			err = pub.WriteAudio(tg.ts, tg.body)
		case flv.TagScript:
			err = pub.WriteData(tg.ts, tg.body)
		}
		if err != nil {
			return firstKey, err
		}
	}
	return firstKey, nil
}

// dialRTMPIn publishes to the gateway's ingest with key.
func (h *harness) dialRTMPIn(ctx context.Context, key string, tlsCfg *tls.Config) (*rtmppush.Publisher, error) {
	ep, err := rtmppush.ParseEndpoint(h.rtmpInURL(tlsCfg != nil), key)
	if err != nil {
		return nil, err
	}
	return rtmppush.Dial(ctx, rtmppush.Config{Endpoint: ep, TLSConfig: tlsCfg, PublishTimeout: 5 * time.Second})
}

// rtmpStream waits for the one stream of source rtmp in state (live: with
// its broadcast live).
func (h *harness) rtmpStream(state string, timeout time.Duration) streamView {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	var last []streamView
	for time.Now().Before(deadline) {
		var list struct{ Streams []streamView }
		h.call("GET", "/v1/streams", nil, &list)
		last = list.Streams
		for _, sv := range list.Streams {
			if sv.Source == "rtmp" && sv.State == state && (state != "live" || sv.Broadcast.State == "live") {
				return sv
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("no rtmp stream in state %q: %+v", state, last)
	return streamView{}
}

// waitNoStreams waits until the gateway lists no stream.
func (h *harness) waitNoStreams(timeout time.Duration) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var list struct{ Streams []streamView }
		h.call("GET", "/v1/streams", nil, &list)
		if len(list.Streams) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatal("the rtmp stream did not close")
}

// The frame durations of ffmpegSourceArgs' material.
const videoFrameMs, audioFrameMs = 1000.0 / 30, 1024000.0 / 48000

// recordingCheck is what a target's recording holds.
type recordingCheck struct {
	videoFrames, audioFrames int
	reordered                int     // video packets shown before the one decoded before them (B-frames)
	videoMs, audioMs         float64 // first packet to the end of the last
	startSkewMs              float64 // audio's first packet minus video's
	holes                    int     // gaps of over one and a half frames between consecutive frames of a track
}

// checkRecording probes a target's recording: it decodes clean, video DTS
// never goes back, and it returns the counts.
func checkRecording(t *testing.T, name, path string) recordingCheck {
	t.Helper()
	var rc recordingCheck
	pr, err := gatewaytest.Probe(path)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	v, a := pr.Video(), pr.Audio()
	if v == nil || v.CodecName != "h264" || v.Width != 640 || a == nil || a.CodecName != "aac" || a.SampleRate != 48000 {
		t.Fatalf("%s: video %+v audio %+v", name, v, a)
	}
	rc.videoFrames, rc.audioFrames = v.NbReadFrames, a.NbReadFrames
	pkts, err := gatewaytest.ProbePackets(path)
	if err != nil {
		t.Fatal(err)
	}
	vs, ve, as, ae, lastDTS, lastPTS := math.NaN(), 0.0, math.NaN(), 0.0, math.Inf(-1), math.Inf(-1)
	for _, p := range pkts {
		if p.CodecType == "video" {
			if math.IsNaN(vs) {
				vs = p.DTSMillis
			}
			if !math.IsInf(lastDTS, -1) && p.DTSMillis-lastDTS > 1.5*videoFrameMs {
				rc.holes++
			}
			if p.DTSMillis <= lastDTS {
				t.Errorf("%s: video dts %.0f after %.0f", name, p.DTSMillis, lastDTS)
			}
			lastDTS = p.DTSMillis
			if p.PTSMillis < p.DTSMillis-0.5 {
				t.Errorf("%s: video pts %.0f before its dts %.0f", name, p.PTSMillis, p.DTSMillis)
			}
			if p.PTSMillis < lastPTS {
				rc.reordered++
			}
			lastPTS = p.PTSMillis
			ve = p.DTSMillis + videoFrameMs
			continue
		}
		if math.IsNaN(as) {
			as = p.DTSMillis
		} else if p.DTSMillis-(ae-audioFrameMs) > 1.5*audioFrameMs {
			rc.holes++
		}
		ae = p.DTSMillis + audioFrameMs
	}
	rc.videoMs, rc.audioMs, rc.startSkewMs = ve-vs, ae-as, as-vs
	if errs, err := gatewaytest.DecodeErrors(path); err != nil || errs != "" {
		t.Errorf("%s: decoding: %v %s", name, err, errs)
	}
	return rc
}

// TestRTMPInFFmpeg: ffmpeg publishes 6 s with B-frames and AAC to a relay
// key; the stream shows as source rtmp, broadcasts to nginx-rtmp and
// MediaMTX, and both recordings hold every frame, B-frame order intact, A/V
// in sync. ffmpeg's unpublish at the end ends the stream.
func TestRTMPInFFmpeg(t *testing.T) {
	parallel(t, heavy)
	gatewaytest.NeedTool(t, "ffmpeg")
	gatewaytest.NeedTool(t, "ffprobe")
	dir := t.TempDir()
	nginx := gatewaytest.StartNginx(t, filepath.Join(dir, "nginx"))
	if err := os.MkdirAll(filepath.Join(dir, "mtx"), 0o755); err != nil {
		t.Fatal(err)
	}
	mtx := gatewaytest.StartMediaMTX(t, filepath.Join(dir, "mtx"), "fmp4", time.Hour)
	h := newHarness(t, harnessOptions{rtmpIn: true, relays: func(string) []gateway.Relay {
		return []gateway.Relay{{Name: "studio", Key: rtmpInKey, Targets: []rtmpout.Spec{
			{Output: "rtmp://" + nginx + "/live/rtmpin"}, {Output: "rtmp://" + mtx.Addr + "/live/rtmpin"}}}}
	}})
	const seconds = 6
	ff := exec.Command("ffmpeg", append(append([]string{"-nostdin", "-hide_banner", "-loglevel", "error", "-re"}, ffmpegSourceArgs(seconds)...),
		"-f", "flv", h.rtmpInURL(false)+"/"+rtmpInKey)...)
	var ffOut strings.Builder
	ff.Stdout, ff.Stderr = &ffOut, &ffOut
	if err := ff.Start(); err != nil {
		t.Fatal(err)
	}
	ffDone, ffExited := make(chan error, 1), make(chan struct{})
	go func() {
		ffDone <- ff.Wait()
		close(ffExited)
	}()
	t.Cleanup(func() {
		_ = ff.Process.Kill()
		<-ffExited
	})

	sv := h.rtmpStream("live", 10*time.Second)
	if sv.Name != "studio" || sv.Video == nil || sv.Video.Codec != "H264" || sv.Video.Width != 640 || sv.Video.Height != 360 {
		t.Errorf("stream view: %+v video %+v", sv, sv.Video)
	}
	if sv.Broadcast == nil || len(sv.Broadcast.Targets) != 2 {
		t.Fatalf("broadcast: %+v", sv.Broadcast)
	}
	select {
	case err := <-ffDone:
		if err != nil {
			t.Fatalf("ffmpeg: %v: %s", err, ffOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ffmpeg did not finish")
	}
	h.waitNoStreams(10 * time.Second)
	time.Sleep(500 * time.Millisecond) // the ingests close their recordings

	rec := map[string]recordingCheck{"nginx-rtmp": checkRecording(t, "nginx-rtmp", filepath.Join(dir, "nginx", "rtmpin.flv"))}
	segs := mtx.Recordings("live/rtmpin")
	if len(segs) != 1 {
		t.Fatalf("MediaMTX recorded %d segments: %v", len(segs), segs)
	}
	rec["MediaMTX"] = checkRecording(t, "MediaMTX", segs[0])
	for name, rc := range rec {
		// MediaMTX's recorder reads the path through its own queue, which
		// the path drops when its publisher (the gateway) leaves: on a
		// loaded machine the last few hundred milliseconds sent never
		// reach the file (seen: 7 AAC frames short while nginx-rtmp,
		// which writes as it reads, held all 283). So MediaMTX's file
		// may be short at its end, never have a hole.
		tail := 0
		if name == "MediaMTX" {
			tail = 12
		}
		if rc.holes > 0 {
			t.Errorf("%s: %d holes in the recording", name, rc.holes)
		}
		// MediaMTX writes a sample when the next of its track comes: the
		// last one of each stays unwritten.
		if want := seconds * 30; rc.videoFrames < want-1-tail || rc.videoFrames > want {
			t.Errorf("%s: %d video frames, ffmpeg sent %d", name, rc.videoFrames, want)
		}
		if want := seconds * 48000 / 1024; rc.audioFrames < want-2-tail || rc.audioFrames > want+2 {
			t.Errorf("%s: %d audio frames, want about %d", name, rc.audioFrames, want)
		}
		// -bf 2: I P B B P B B ..., a B-frame after each P shows first.
		if rc.reordered < rc.videoFrames/5 {
			t.Errorf("%s: %d of %d video frames are B-frames shown before the frame decoded before them, want a third: the composition times were lost", name, rc.reordered, rc.videoFrames)
		}
		if math.Abs(rc.startSkewMs) > 50 || math.Abs(rc.audioMs-rc.videoMs) > 100+float64(tail)*audioFrameMs {
			t.Errorf("%s: A/V out of sync: audio starts %.0f ms after video, lasts %.0f ms against %.0f", name, rc.startSkewMs, rc.audioMs, rc.videoMs)
		}
		t.Logf("%s: %+v", name, rc)
	}
	// MediaMTX's recorder starts at the first picture's presentation
	// time, which B-frames put a composition offset (66 ms) after its
	// decode time: the AAC frame that covers the keyframe's decode time
	// (the first the gateway sends) comes before it and is discarded, as
	// it is when the same ffmpeg command publishes to MediaMTX directly
	// (checked: one "too late" line there too).
	if n := strings.Count(mtx.Log(), "too late"); n > 1 {
		t.Errorf("MediaMTX discarded samples %d times as too late", n)
	}
	if strings.Contains(h.logs.String(), rtmpInKey) {
		t.Error("the relay key appears in the gateway's log")
	}
}

// splitAtKeyframe splits tags at the first video keyframe at or after ms:
// the first part, and a second one as a publisher that reconnects sends it
// (its sequence headers and onMetaData again first, its clock from 0).
func splitAtKeyframe(t *testing.T, tags []flvTag, ms uint32) (first, second []flvTag) {
	t.Helper()
	var headers []flvTag
	for i, tg := range tags {
		switch tg.typ {
		case flv.TagScript:
			if i < 3 {
				headers = append(headers, tg)
			}
			continue
		case flv.TagAudio:
			if at, err := flv.ParseAudioTag(tg.body); err == nil && at.PacketType == flv.AudioPacketTypeSequenceStart && i < 3 {
				headers = append(headers, tg)
			}
			continue
		}
		vt, err := flv.ParseVideoTag(tg.body)
		if err != nil {
			t.Fatal(err)
		}
		if vt.SequenceStart() {
			headers = append(headers, tg)
			continue
		}
		if vt.Keyframe() && tg.ts >= ms {
			base := tg.ts
			for _, h := range headers {
				h.ts = 0
				second = append(second, h)
			}
			for _, r := range tags[i:] {
				r.ts -= base
				second = append(second, r)
			}
			return tags[:i], second
		}
	}
	t.Fatalf("no keyframe at or after %d ms", ms)
	return nil, nil
}

// isPicture tells a video tag that carries a frame: not a sequence header
// nor the AVC end of sequence ffmpeg's muxer ends a file with.
func isPicture(body []byte) bool {
	vt, err := flv.ParseVideoTag(body)
	return err == nil && !vt.SequenceStart() && !(!vt.Enhanced && vt.PacketType == 2)
}

// videoFrames are the tags' video frames.
func videoFrames(tags []flvTag) [][]byte {
	var out [][]byte
	for _, tg := range tags {
		if tg.typ == flv.TagVideo && isPicture(tg.body) {
			out = append(out, tg.body)
		}
	}
	return out
}

// receivedVideo is what an in-process ingest received of video frames,
// with their timestamps.
func receivedVideo(msgs []received) (bodies [][]byte, ts []uint32, firstAt time.Time) {
	for _, r := range msgs {
		if r.msg.Type == flv.TagVideo && isPicture(r.msg.Body) {
			if firstAt.IsZero() {
				firstAt = r.at
			}
			bodies = append(bodies, r.msg.Body)
			ts = append(ts, r.msg.Timestamp)
		}
	}
	return bodies, ts, firstAt
}

// TestRTMPInOwnClientResume: castbridge's own RTMP client publishes an
// 8 s clip with B-frames to a relay of four targets (two in-process
// ingests, nginx-rtmp, MediaMTX); one of them is killed
// and restarted and reconnects while the others keep every frame; the
// publisher drops (no unpublish) at 4 s and comes back 1 s later with its
// clock from 0, and the broadcast goes on: no target reconnects, the
// timeline goes on by the time it was away, every frame arrives byte for
// byte (composition times included). Its unpublish ends the stream.
func TestRTMPInOwnClientResume(t *testing.T) {
	parallel(t, heavy)
	gatewaytest.NeedTool(t, "ffprobe")
	tags := readFLV(t, makeFLV(t, 8))
	partA, partB := splitAtKeyframe(t, tags, 4000)
	dir := t.TempDir()
	nginx := gatewaytest.StartNginx(t, dir)
	if err := os.MkdirAll(filepath.Join(dir, "mtx"), 0o755); err != nil {
		t.Fatal(err)
	}
	mtx := gatewaytest.StartMediaMTX(t, filepath.Join(dir, "mtx"), "fmp4", time.Hour)
	killAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	h := newHarness(t, harnessOptions{rtmpIn: true, rtmpResume: 3 * time.Second,
		reconnect: rtmpout.ReconnectPolicy{Initial: 200 * time.Millisecond, Max: 500 * time.Millisecond, Window: 30 * time.Second},
		relays: func(ingestURL string) []gateway.Relay {
			return []gateway.Relay{{Key: rtmpInKey, Targets: []rtmpout.Spec{
				{Output: ingestURL + "/keep"}, {Output: "rtmp://" + killAddr + "/live/kill"}, {Output: "rtmp://" + nginx + "/live/own"},
				{Output: "rtmp://" + mtx.Addr + "/live/own"}}}}
		}})
	killIng, _ := startIngest(t, killAddr, h.log)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub, err := h.dialRTMPIn(ctx, rtmpInKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	pushed := make(chan time.Time, 1)
	go func() { pushed <- pushTags(t, pub, partA, time.Now()) }()
	sv := h.rtmpStream("live", 5*time.Second)
	if sv.Name != "rtmp" {
		t.Errorf("an unnamed relay's stream is named %q, want rtmp", sv.Name)
	}
	// The second target goes away and comes back.
	time.Sleep(1200 * time.Millisecond)
	_ = killIng.Close()
	time.Sleep(600 * time.Millisecond)
	_, killRec := startIngest(t, killAddr, h.log)
	firstKey := <-pushed
	pub.Abort() // dropped: no FCUnpublish

	time.Sleep(time.Second)
	var away streamView
	h.call("GET", "/v1/streams/"+sv.ID, nil, &away)
	if away.ID != sv.ID || away.Broadcast == nil || away.Broadcast.State != "live" || away.State != "live" {
		t.Fatalf("while the publisher is away: %+v", away)
	}
	pub2, err := h.dialRTMPIn(ctx, rtmpInKey, nil)
	if err != nil {
		t.Fatalf("coming back: %v", err)
	}
	pushTags(t, pub2, partB, time.Now())
	var info struct {
		Broadcast struct {
			Targets []struct {
				Output     string `json:"output"`
				State      string `json:"state"`
				Reconnects int    `json:"reconnects"`
			} `json:"targets"`
		} `json:"broadcast"`
	}
	h.call("GET", "/v1/streams/"+sv.ID, nil, &info)
	time.Sleep(300 * time.Millisecond) // the last frames reach the ingests
	if err := pub2.Close(); err != nil {
		t.Errorf("unpublish: %v", err)
	}
	h.waitNoStreams(10 * time.Second)
	time.Sleep(500 * time.Millisecond)

	if len(info.Broadcast.Targets) != 4 {
		t.Fatalf("targets: %+v", info.Broadcast.Targets)
	}
	for i, tg := range info.Broadcast.Targets {
		wantReconnects := 0
		if i == 1 {
			wantReconnects = 1
		}
		if tg.State != "live" || tg.Reconnects != wantReconnects {
			t.Errorf("target %s: %s after %d reconnects, want live after %d", tg.Output, tg.State, tg.Reconnects, wantReconnects)
		}
	}
	if pubs := strings.Count(","+strings.Join(h.rec.commandsOf("keep"), ",,")+",", ",publish,"); pubs != 1 {
		t.Errorf("the kept target was published %d times, want once: %v", pubs, h.rec.commandsOf("keep"))
	}
	_, keep := h.rec.get("keep")
	got, ts, firstAt := receivedVideo(keep)
	want := append(videoFrames(partA), videoFrames(partB)...)
	if len(got) != len(want) {
		t.Errorf("the kept target got %d video frames, the publisher sent %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if string(got[i]) != string(want[i]) {
			t.Errorf("video frame %d differs from what the publisher sent", i)
			break
		}
	}
	if back := maxBackStep(keep); back != 0 {
		t.Errorf("the kept target's timestamps step back by up to %d ms", back)
	}
	nA := len(videoFrames(partA))
	if len(ts) > nA {
		// Across the resume: the last frame before, the first after.
		gap := int64(ts[nA]) - int64(ts[nA-1])
		if gap < 900 || gap > 1600 {
			t.Errorf("the timeline moved on %d ms across a publisher away for about 1 s", gap)
		}
		t.Logf("resume: the timeline went on by %d ms", gap)
	}
	latency := firstAt.Sub(firstKey)
	t.Logf("publisher's first keyframe to the target's first frame: %v", latency)
	if firstKey.IsZero() || firstAt.IsZero() || latency > 1500*time.Millisecond {
		t.Errorf("first keyframe written at %v, the target's first frame at %v", firstKey, firstAt)
	}

	_, killed := killRec.get("kill")
	kb, _, _ := receivedVideo(killed)
	if len(kb) < len(videoFrames(partB)) {
		t.Errorf("the restarted target got %d video frames, want at least the %d after the resume", len(kb), len(videoFrames(partB)))
	}
	if len(killed) > 0 {
		if vt, _ := flv.ParseVideoTag(kb[0]); !vt.Keyframe() {
			t.Error("the restarted target's first frame is no keyframe")
		}
	}

	recs := map[string]string{"nginx-rtmp": filepath.Join(dir, "own.flv")}
	if segs := mtx.Recordings("live/own"); len(segs) != 1 {
		t.Errorf("MediaMTX recorded %d segments, want one: its connection must not restart", len(segs))
	} else {
		recs["MediaMTX"] = segs[0]
	}
	for name, path := range recs {
		rc := checkRecording(t, name, path)
		// MediaMTX keeps the last sample of a track back.
		if rc.videoFrames != len(want) && (name != "MediaMTX" || rc.videoFrames != len(want)-1) {
			t.Errorf("%s recorded %d video frames, the publisher sent %d", name, rc.videoFrames, len(want))
		}
		if rc.reordered < rc.videoFrames/5 {
			t.Errorf("%s: only %d B-frames reordered of %d", name, rc.reordered, rc.videoFrames)
		}
		t.Logf("%s: %+v", name, rc)
	}
}

// lastMetadata is the last onMetaData an in-process ingest got on stream.
func (h *harness) lastMetadata(stream string) map[string]any {
	_, msgs := h.rec.get(stream)
	for i := len(msgs) - 1; i >= 0; i-- {
		if m := msgs[i].msg; m.Type == flv.TagScript && m.Handler == "onMetaData" {
			md, _ := m.Values.(map[string]any)
			return md
		}
	}
	return nil
}

// TestRTMPInAPI: an RTMPS publish with a relay key is a stream the API
// drives like a WebRTC one: its publisher's onMetaData merged with
// castbridge's and the user's (live POST /metadata), its broadcast stopped
// and started again with POST /broadcast (which refuses Opus audio), its
// stats. Wrong keys and a key published twice are refused with
// NetStream.Publish.BadName, and DELETE ends the publisher's connection.
func TestRTMPInAPI(t *testing.T) {
	parallel(t, light)
	ca, err := gatewaytest.NewPrivateCA()
	if err != nil {
		t.Fatal(err)
	}
	tags := readFLV(t, makeFLV(t, 8))
	h := newHarness(t, harnessOptions{rtmpIn: true, rtmpInTLS: &tls.Config{Certificates: []tls.Certificate{ca.Server}},
		relays: func(ingestURL string) []gateway.Relay {
			return []gateway.Relay{{Name: "api", Key: rtmpInKey, Targets: []rtmpout.Spec{{Output: ingestURL + "/api-a"}}}}
		}})
	clientTLS := &tls.Config{RootCAs: ca.Pool}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, key := range []string{"wrong-key", rtmpInKey + "x", ""} {
		_, err := h.dialRTMPIn(ctx, key, clientTLS)
		var rj *rtmppush.RejectedError
		if key == "" {
			if err == nil {
				t.Error("a publish without a name was accepted")
			}
			continue
		}
		if !errors.As(err, &rj) || rj.Code != "NetStream.Publish.BadName" {
			t.Errorf("publish with a wrong key: %v, want NetStream.Publish.BadName", err)
		}
	}

	pub, err := h.dialRTMPIn(ctx, rtmpInKey, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	pushErr := make(chan error, 1)
	go func() {
		_, err := pushTagsErr(pub, tags, time.Now())
		pushErr <- err
	}()
	sv := h.rtmpStream("live", 5*time.Second)
	if sv.Name != "api" {
		t.Errorf("name %q, want the relay's", sv.Name)
	}
	if _, err := h.dialRTMPIn(ctx, rtmpInKey, clientTLS); err == nil || !strings.Contains(err.Error(), "NetStream.Publish.BadName") {
		t.Errorf("the same key published twice at once: %v, want NetStream.Publish.BadName", err)
	}

	time.Sleep(500 * time.Millisecond)
	md := h.lastMetadata("api-a")
	if enc, _ := md["encoder"].(string); !strings.HasPrefix(enc, "Lavf") || md["width"] != float64(640) || md["audiocodecid"] != float64(10) {
		t.Errorf("the target's onMetaData %v: want the publisher's encoder, its width and AAC", md)
	}
	path := "/v1/streams/" + sv.ID
	if st, raw := h.call("POST", path+"/metadata", map[string]any{"handlerName": "onMetaData", "values": map[string]any{"show": "rtmp-in"}}, nil); st != http.StatusAccepted {
		t.Fatalf("metadata: %d %s", st, raw)
	}
	time.Sleep(300 * time.Millisecond)
	if md := h.lastMetadata("api-a"); md["show"] != "rtmp-in" || !strings.HasPrefix(fmt.Sprint(md["encoder"]), "Lavf") {
		t.Errorf("after POST /metadata the target's onMetaData is %v, want the user's show and the publisher's encoder", md)
	}

	h.expectError("POST", path+"/broadcast", map[string]any{"targets": []map[string]any{{"output": h.ingestURL() + "/api-b"}}}, http.StatusConflict, "ALREADY_BROADCASTING")
	if st, raw := h.call("DELETE", path+"/broadcast", nil, nil); st != http.StatusOK {
		t.Fatalf("stop broadcast: %d %s", st, raw)
	}
	h.expectError("POST", path+"/broadcast", map[string]any{"targets": []map[string]any{{"output": h.ingestURL() + "/api-b", "audiocodec": "opus"}}}, http.StatusUnprocessableEntity, "UNSUPPORTED_CODEC")
	started := time.Now()
	h.broadcastTo(sv.ID, map[string]any{"output": h.ingestURL() + "/api-b"})
	time.Sleep(1500 * time.Millisecond)
	_, b := h.rec.get("api-b")
	bodies, _, firstAt := receivedVideo(b)
	if len(bodies) < 30 {
		t.Fatalf("the new broadcast's target got %d video frames", len(bodies))
	}
	if vt, _ := flv.ParseVideoTag(bodies[0]); !vt.Keyframe() {
		t.Error("the new broadcast's first frame is no keyframe")
	}
	// The GOP since the last keyframe goes first: no waiting for the next.
	t.Logf("broadcast started mid-GOP: first frame %v after the request", firstAt.Sub(started))
	if firstAt.Sub(started) > time.Second {
		t.Errorf("the new broadcast's first frame came %v after its start", firstAt.Sub(started))
	}

	var st struct {
		Inbound struct {
			Video struct {
				Bitrate            float64 `json:"bitrate"`
				FPS                float64 `json:"fps"`
				Keyframes          int     `json:"keyframes"`
				KeyframeIntervalMs int     `json:"keyframeIntervalMs"`
				Width              int     `json:"width"`
			} `json:"video"`
			Audio *struct {
				Bitrate float64 `json:"bitrate"`
			} `json:"audio"`
		} `json:"inbound"`
	}
	h.call("GET", path+"/stats", nil, &st)
	time.Sleep(1100 * time.Millisecond)
	h.call("GET", path+"/stats", nil, &st)
	v := st.Inbound.Video
	if math.Abs(v.FPS-30) > 1 || v.KeyframeIntervalMs != 2000 || v.Width != 640 || v.Bitrate <= 0 || v.Keyframes < 2 || st.Inbound.Audio == nil || st.Inbound.Audio.Bitrate <= 0 {
		t.Errorf("inbound stats: %+v audio %+v", v, st.Inbound.Audio)
	}

	if st, raw := h.call("DELETE", path, nil, nil); st != http.StatusOK && st != http.StatusNoContent {
		t.Fatalf("delete: %d %s", st, raw)
	}
	select {
	case err := <-pushErr:
		if err == nil {
			t.Error("the publisher was not cut off when its stream was deleted")
		}
	case <-time.After(5 * time.Second):
		t.Error("the publisher's connection outlived its stream by 5 s")
	}
	if strings.Contains(h.logs.String(), rtmpInKey) {
		t.Error("the relay key appears in the gateway's log")
	}
}
