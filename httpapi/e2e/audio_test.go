package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/format/mediafile"
)

// makeClickOpus encodes 10 s of 48 kHz stereo Opus (20 ms packets) that is
// silent but for a 20 ms 1 kHz beep at 0.5 s, 1.5 s, ... : audio whose
// position can be read back from the output. It returns the file and its
// pre-skip in ms (the decoder delay the beeps come out late by).
func makeClickOpus(t *testing.T, dir string) (string, float64) {
	t.Helper()
	ffmpeg := gatewaytest.NeedTool(t, "ffmpeg")
	path := filepath.Join(dir, "clicks.ogg")
	expr := "if(lt(mod(t+0.5\\,1)\\,0.02)\\,0.8*sin(2*PI*1000*t)\\,0)"
	out, err := exec.Command(ffmpeg, "-v", "error", "-f", "lavfi", "-i", "aevalsrc=exprs="+expr+":s=48000:d=10",
		"-ac", "2", "-c:a", "libopus", "-b:a", "64k", "-frame_duration", "20", "-y", path).CombinedOutput()
	if err != nil {
		t.Skipf("cannot make Opus test media (libopus): %v %s", err, out)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(raw, []byte("OpusHead"))
	if i < 0 || len(raw) < i+12 {
		t.Fatal("no OpusHead")
	}
	preSkip := binary.LittleEndian.Uint16(raw[i+10:])
	return path, float64(preSkip) / 48
}

// makeNoiseOpus encodes 5 s of stereo pink noise to Opus at 160 kbit/s:
// audio dense enough that an AAC encoder spends its whole bit rate on it.
func makeNoiseOpus(t *testing.T, dir string) string {
	t.Helper()
	ffmpeg := gatewaytest.NeedTool(t, "ffmpeg")
	path := filepath.Join(dir, "noise.ogg")
	out, err := exec.Command(ffmpeg, "-v", "error", "-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.3:duration=5:sample_rate=48000",
		"-ac", "2", "-c:a", "libopus", "-b:a", "160k", "-frame_duration", "20", "-y", path).CombinedOutput()
	if err != nil {
		t.Fatalf("cannot make Opus test media (ffmpeg with libopus): %v %s", err, out)
	}
	return path
}

// decodeAudio decodes the first audio stream of a media file to 48 kHz mono
// PCM with ffmpeg, from its first packet on.
func decodeAudio(t *testing.T, path string) []int16 {
	t.Helper()
	ffmpeg := gatewaytest.NeedTool(t, "ffmpeg")
	out, err := exec.Command(ffmpeg, "-v", "error", "-i", path, "-map", "0:a:0", "-ac", "1", "-ar", "48000", "-f", "s16le", "-").Output()
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	pcm := make([]int16, len(out)/2)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(out[2*i:]))
	}
	return pcm
}

// onsets returns the sample indices where the signal rises above thresh
// after at least 300 ms below it.
func onsets(pcm []int16, thresh int16) []int {
	var out []int
	quiet := 48 * 300
	for i, v := range pcm {
		if v > thresh || v < -thresh {
			if quiet >= 48*300 {
				out = append(out, i)
			}
			quiet = 0
		} else {
			quiet++
		}
	}
	return out
}

func rms(pcm []int16) float64 {
	if len(pcm) == 0 {
		return 0
	}
	var sum float64
	for _, v := range pcm {
		sum += float64(v) * float64(v)
	}
	return math.Sqrt(sum / float64(len(pcm)))
}

// writeAudioFLV writes the audio tags an ingest received to an FLV file,
// for ffmpeg to decode.
func writeAudioFLV(t *testing.T, path string, msgs []received) (firstRaw uint32, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := flv.NewWriter(f, true, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range msgs {
		if r.msg.Type != flv.TagAudio {
			continue
		}
		at, err := flv.ParseAudioTag(r.msg.Body)
		if err != nil {
			t.Fatal(err)
		}
		if at.SoundFormat == 10 && at.PacketType == 1 {
			if n == 0 {
				firstRaw = r.msg.Timestamp
			}
			n++
		}
		if err := w.WriteTag(flv.TagAudio, r.msg.Timestamp, r.msg.Body); err != nil {
			t.Fatal(err)
		}
	}
	return firstRaw, n
}

func (h *harness) startTargets(id string, targets ...map[string]any) {
	h.t.Helper()
	if st, raw := h.call("POST", "/v1/streams/"+id+"/broadcast", map[string]any{"targets": targets}, nil); st != http.StatusCreated {
		h.t.Fatalf("start broadcast: %d %s", st, raw)
	}
}

func (h *harness) closeStream(id string) {
	h.t.Helper()
	if st, raw := h.call("DELETE", "/v1/streams/"+id, nil, nil); st != http.StatusNoContent {
		h.t.Fatalf("delete stream: %d %s", st, raw)
	}
}

// videoFramesOf returns the coded video frames (no sequence headers) an
// ingest received.
func videoFramesOf(t *testing.T, msgs []received) []videoTag {
	var out []videoTag
	for _, r := range msgs {
		if r.msg.Type == flv.TagVideo {
			if v := parseVideo(t, r); !v.seqHeader {
				out = append(out, v)
			}
		}
	}
	return out
}

// TestAudioLipSync: H.264 + Opus with beeps every second through the gateway
// into nginx-rtmp and the in-process ingest. The recording has H.264 and
// AAC (48 kHz stereo) of the same duration, and the beeps come out where
// the video the publisher sent at the same moment does: the A/V offset of
// the output equals the publisher's (0) within ±20 ms at the start and ±5 ms
// after 60 s. -short runs 10 s instead of 62 s.
func TestAudioLipSync(t *testing.T) {
	// Not parallel: it measures A/V sync to the millisecond, which a
	// loaded machine's scheduler would move (see schedule_test.go).
	runFor := 62 * time.Second
	if testing.Short() {
		runFor = 10 * time.Second
	}
	dir := t.TempDir()
	clicks, preSkipMs := makeClickOpus(t, dir)
	nginx := gatewaytest.StartNginx(t, dir)
	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: clicks, Loop: true})
	h.startTargets(id, map[string]any{"output": "rtmp://" + nginx + "/live/lipsync"}, map[string]any{"output": h.ingestURL() + "/lipmirror"})
	time.Sleep(runFor)
	cancel()
	pub.Wait()
	time.Sleep(300 * time.Millisecond)
	var st struct {
		Targets []struct {
			AudioDropped uint64 `json:"audioDropped"`
		} `json:"targets"`
	}
	h.call("GET", "/v1/streams/"+id+"/stats", nil, &st)
	var audioDropped []uint64
	for _, tg := range st.Targets {
		audioDropped = append(audioDropped, tg.AudioDropped)
	}
	h.closeStream(id)

	// The offset, from the in-process ingest's tags.
	_, msgs := h.rec.get("lipmirror")
	frames := videoFramesOf(t, msgs)
	if len(frames) == 0 || !frames[0].keyframe {
		t.Fatal("no video starting with a keyframe at the ingest")
	}
	for i, r := range msgs {
		if r.msg.Type == flv.TagVideo {
			break
		}
		if r.msg.Type == flv.TagAudio {
			t.Fatalf("audio tag %d before the first video tag", i)
		}
	}
	sent := pub.Sent()
	first := -1
	for i, s := range sent {
		if s.IDR && s.Digest == frames[0].digest && s.FirstPacketAt.Before(frames[0].at) {
			first = i
		}
	}
	if first < 0 {
		t.Fatal("the first frame at the ingest is none the publisher sent")
	}
	pFirst := float64(sent[first].PTS) / float64(time.Millisecond)
	// The material loops after its packets' total duration (a little over
	// the 10 s it was made from: the encoder pads the last packet).
	pkts, err := mediafile.ReadOpusFile(clicks)
	if err != nil {
		t.Fatal(err)
	}
	var loopMs float64
	for _, p := range pkts {
		loopMs += float64(p.Duration) / float64(time.Millisecond)
	}
	flvPath := filepath.Join(dir, "mirror-audio.flv")
	a0, nAAC := writeAudioFLV(t, flvPath, msgs)
	pcm := decodeAudio(t, flvPath)
	ons := onsets(pcm, 8000)
	if len(ons) < int(runFor.Seconds())-3 {
		t.Fatalf("%d beeps found in %d s of output audio (%d AAC frames at the ingest, %d of the publisher's %d video frames)", len(ons), len(pcm)/48000, nAAC, len(frames), len(sent))
	}
	var offsets []float64
	var outTimes []float64
	for _, i := range ons {
		out := float64(a0) + float64(i)/48 // output ms
		// The video the publisher sent at that output time...
		pv := pFirst + out - float64(frames[0].ts)
		// ...and the beep's own time: the nearest k+0.5 s, plus the Opus
		// decoder's pre-skip.
		pa := nearestBeep(pv-preSkipMs, loopMs) + preSkipMs
		offsets = append(offsets, pv-pa)
		outTimes = append(outTimes, out)
	}
	med := func(v []float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	startOff := med(offsets[:5])
	endOff := med(offsets[len(offsets)-5:])
	t.Logf("A/V offset (audio late > 0): start %.1f ms, end %.1f ms (at %.1f s); all beeps: min %.1f max %.1f; %d AAC frames; audio dropped as late per target %v",
		startOff, endOff, outTimes[len(outTimes)-1]/1000, slicesMin(offsets), slicesMax(offsets), nAAC, audioDropped)
	// The audio follows the A/V clock within resyncMs (2 ms), and the
	// clock places the tracks by their least-delayed packets from the
	// start (avsync.StartWindow), then by the Sender Reports: the offset
	// is the publisher's within ±5 ms from the first beeps to the last.
	if math.Abs(startOff) > 5 || math.Abs(endOff) > 5 {
		t.Errorf("A/V offset start %.1f ms, end %.1f ms (want both ±5); audio frames dropped as late per target: %v", startOff, endOff, audioDropped)
	}
	if !testing.Short() && outTimes[len(outTimes)-1] < 60000 {
		t.Errorf("last beep at %.1f s of output, want past 60 s", outTimes[len(outTimes)-1]/1000)
	}

	// The nginx recording: H.264 + AAC 48 kHz stereo, same durations.
	path := filepath.Join(dir, "lipsync.flv")
	waitFile(t, path)
	checkAVRecording(t, path, 0.1)
}

// nearestBeep is the publisher time (ms, without pre-skip) of the beep
// nearest to x: beeps at 500, 1500, ... 9500 ms of each loop of loopMs.
func nearestBeep(x, loopMs float64) float64 {
	best := math.Inf(1)
	loop := math.Floor(x / loopMs)
	for l := loop - 1; l <= loop+1; l++ {
		for k := 0; k < 10; k++ {
			if b := l*loopMs + 500 + float64(k)*1000; math.Abs(b-x) < math.Abs(best-x) {
				best = b
			}
		}
	}
	return best
}

func slicesMin(v []float64) float64 {
	m := math.Inf(1)
	for _, x := range v {
		m = math.Min(m, x)
	}
	return m
}

func slicesMax(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = math.Max(m, x)
	}
	return m
}

// checkAVRecording checks a recording has H.264 and AAC 48 kHz stereo whose
// durations agree within tol seconds, and returns the decoded audio.
func checkAVRecording(t *testing.T, path string, tol float64) []int16 {
	t.Helper()
	pr, err := gatewaytest.Probe(path)
	if err != nil {
		t.Fatal(err)
	}
	v, a := pr.Video(), pr.Audio()
	if v == nil || v.CodecName != "h264" {
		t.Fatalf("recording video: %+v", v)
	}
	if a == nil || a.CodecName != "aac" || a.SampleRate != 48000 || a.Channels != 2 {
		t.Fatalf("recording audio: %+v", a)
	}
	pkts, err := gatewaytest.ProbeFrames(path)
	if err != nil || len(pkts) == 0 {
		t.Fatalf("probe frames: %v", err)
	}
	vStart := float64(pkts[0].PTSMillis) / 1000
	vEnd := float64(pkts[len(pkts)-1].PTSMillis)/1000 + 1.0/30
	pcm := decodeAudio(t, path)
	aStart := a.StartTime
	if math.IsNaN(aStart) {
		aStart = 0
	}
	aEnd := aStart + float64(len(pcm))/48000
	t.Logf("%s: video %.3f..%.3f s (%d frames), audio %.3f..%.3f s", filepath.Base(path), vStart, vEnd, len(pkts), aStart, aEnd)
	if d := (aEnd - aStart) - (vEnd - vStart); math.Abs(d) > tol {
		t.Errorf("audio lasts %.3f s, video %.3f s", aEnd-aStart, vEnd-vStart)
	}
	if math.Abs(aStart-vStart) > tol {
		t.Errorf("audio starts at %.3f s, video at %.3f s", aStart, vStart)
	}
	if errs, err := gatewaytest.DecodeErrors(path); err != nil || errs != "" {
		t.Errorf("decoding the recording: %v %s", err, errs)
	}
	return pcm
}

// TestAudioLossAndSilence: 5% of the Opus packets lost keeps the audio as
// long as the video; a video-only publisher still gets an AAC track (of
// silence) as long as its video.
func TestAudioLossAndSilence(t *testing.T) {
	parallel(t, heavy)
	dir := t.TempDir()
	nginx := gatewaytest.StartNginx(t, dir)
	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	relay, err := gatewaytest.NewLossyRelay(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: h.m.ICEPort()},
		gatewaytest.RelayConfig{DropRTP: 0.05, Seed: 3, PayloadTypes: []uint8{111}})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	pub, sv := h.offerWithBroadcast(ctx, map[string]any{"output": "rtmp://" + nginx + "/live/lossyaudio"})
	if err := pub.SetAnswer(relay.RewriteAnswer(sv.SDP)); err != nil {
		t.Fatal(err)
	}
	pub.Start(ctx)

	silentCtx, silentCancel := context.WithCancel(context.Background())
	defer silentCancel()
	vpub, vid := h.publish(silentCtx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), Loop: true})
	h.startTargets(vid, map[string]any{"output": "rtmp://" + nginx + "/live/silent"})

	h.waitState(sv.ID, "live", 10*time.Second)
	time.Sleep(8 * time.Second)
	cancel()
	silentCancel()
	pub.Wait()
	vpub.Wait()
	time.Sleep(300 * time.Millisecond)
	h.closeStream(sv.ID)
	h.closeStream(vid)
	t.Logf("relay dropped %d of %d audio packets", relay.Dropped(), relay.Dropped()+relay.Forwarded())
	if relay.Dropped() < 10 {
		t.Fatalf("the relay dropped only %d packets", relay.Dropped())
	}

	path := filepath.Join(dir, "lossyaudio.flv")
	waitFile(t, path)
	pcm := checkAVRecording(t, path, 0.1)
	if r := rms(pcm); r < 1000 {
		t.Errorf("the lossy stream's audio is nearly silent (RMS %.0f)", r)
	}
	path = filepath.Join(dir, "silent.flv")
	waitFile(t, path)
	pcm = checkAVRecording(t, path, 0.1)
	if r := rms(pcm); r > 10 {
		t.Errorf("the video-only stream's audio is not silent (RMS %.1f)", r)
	}
}

// TestAudioOnlyAndOpusPassthrough: an audio-only publisher yields an
// audio-only stream (AAC sequence header first, no video); a target with
// audiocodec "opus" gets the publisher's Opus as E-RTMP (sequence start,
// then the packets).
func TestAudioOnlyAndOpusPassthrough(t *testing.T) {
	parallel(t, light)
	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{AudioFile: testdata("audio.ogg"), Loop: true})
	h.startTargets(id,
		map[string]any{"output": h.ingestURL() + "/audioonly", "audiobitrate": 96000},
		map[string]any{"output": h.ingestURL() + "/opus", "audiocodec": "opus"})
	// What the publisher sends from here on is what the broadcast carries;
	// what it sent while the targets connected is not (a loaded machine
	// makes that a few hundred ms).
	before := len(pub.SentAudio())
	time.Sleep(4 * time.Second)
	cancel()
	pub.Wait()
	time.Sleep(200 * time.Millisecond)
	h.closeStream(id)
	sentMs := float64(len(pub.SentAudio())-before) * 20

	_, msgs := h.rec.get("audioonly")
	var aac []uint32
	var meta map[string]any
	audioTags := 0
	for i, r := range msgs {
		switch r.msg.Type {
		case flv.TagVideo:
			t.Fatal("video in an audio-only stream")
		case 18:
			if meta == nil && strings.Contains(r.msg.Handler, "onMetaData") {
				meta = asMap(t, r.msg.Values)
			}
		case flv.TagAudio:
			at, err := flv.ParseAudioTag(r.msg.Body)
			if err != nil || at.SoundFormat != 10 {
				t.Fatalf("audio tag %d: %+v %v", i, at, err)
			}
			audioTags++
			if audioTags == 1 && at.PacketType != 0 {
				t.Fatalf("the first AAC tag (%d, ts %d, %x) is not the sequence header", i, r.msg.Timestamp, r.msg.Body[:min(8, len(r.msg.Body))])
			}
			if at.PacketType == 1 {
				aac = append(aac, r.msg.Timestamp)
			}
		}
	}
	if meta == nil || meta["audiocodecid"] != 10.0 || meta["audiodatarate"] != 96.0 || meta["width"] != nil {
		t.Errorf("onMetaData of the audio-only stream: %v", meta)
	}
	if len(aac) < 100 {
		t.Fatalf("%d AAC frames", len(aac))
	}
	span := float64(aac[len(aac)-1]-aac[0]) + 1024.0/48
	t.Logf("audio-only: %d AAC frames over %.0f ms, %.0f ms sent", len(aac), span, sentMs)
	if span < sentMs-300 || span > sentMs+100 {
		t.Errorf("AAC spans %.0f ms, the publisher sent %.0f ms", span, sentMs)
	}
	for i := 1; i < len(aac); i++ {
		if d := int(aac[i]) - int(aac[i-1]); d < 20 || d > 23 {
			t.Errorf("AAC frame %d: %d ms after the previous", i, d)
			break
		}
	}

	_, msgs = h.rec.get("opus")
	var n int
	for _, r := range msgs {
		if r.msg.Type != flv.TagAudio {
			continue
		}
		at, err := flv.ParseAudioTag(r.msg.Body)
		if err != nil || at.SoundFormat != 9 || at.FourCC != flv.FourCCOpus {
			t.Fatalf("opus target audio tag: %+v %v", at, err)
		}
		if n == 0 && (at.PacketType != flv.AudioPacketTypeSequenceStart || !bytes.HasPrefix(at.Payload, []byte("OpusHead"))) {
			t.Fatalf("the first Opus tag is not the sequence start: %+v", at)
		}
		n++
	}
	t.Logf("opus passthrough: %d tags", n)
	if n < 150 {
		t.Errorf("%d Opus tags for %.0f ms of audio", n, sentMs)
	}
}

// TestAudioMute: PATCH audioMuted makes the AAC decode to silence for the
// muted time and brings the publisher's audio back after, with the audio
// as long as the video throughout.
func TestAudioMute(t *testing.T) {
	parallel(t, heavy)
	dir := t.TempDir()
	nginx := gatewaytest.StartNginx(t, dir)
	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"), Loop: true})
	h.startTargets(id, map[string]any{"output": "rtmp://" + nginx + "/live/mute"})
	time.Sleep(2 * time.Second)
	if st, raw := h.call("PATCH", "/v1/streams/"+id, map[string]any{"audioMuted": true}, nil); st != http.StatusOK {
		t.Fatalf("mute: %d %s", st, raw)
	}
	time.Sleep(2 * time.Second)
	if st, raw := h.call("PATCH", "/v1/streams/"+id, map[string]any{"audioMuted": false}, nil); st != http.StatusOK {
		t.Fatalf("unmute: %d %s", st, raw)
	}
	time.Sleep(2 * time.Second)
	cancel()
	pub.Wait()
	time.Sleep(300 * time.Millisecond)
	h.closeStream(id)
	path := filepath.Join(dir, "mute.flv")
	waitFile(t, path)
	pcm := checkAVRecording(t, path, 0.1)
	// 100 ms windows: loud, then ~2 s of silence, then loud again.
	var levels []float64
	for i := 0; i+4800 <= len(pcm); i += 4800 {
		levels = append(levels, rms(pcm[i:i+4800]))
	}
	longest, run := 0, 0
	for _, l := range levels {
		if l < 5 {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	var parts []string
	for _, l := range levels {
		parts = append(parts, fmt.Sprintf("%.0f", l))
	}
	t.Logf("RMS per 100 ms: %s", strings.Join(parts, " "))
	if longest < 17 || longest > 23 {
		t.Errorf("the longest silence is %d00 ms, want ~2 s", longest)
	}
	if len(levels) < 50 || levels[5] < 1000 || levels[len(levels)-5] < 1000 {
		t.Error("the audio is not loud before the mute and after the unmute")
	}
}

// TestIcecastAudio: a target with icecast_audio takes its audio from an
// HTTP MP3 stream, passed through as FLV MP3; an unusable URL is a 400.
func TestIcecastAudio(t *testing.T) {
	parallel(t, light)
	dir := t.TempDir()
	ffmpeg := gatewaytest.NeedTool(t, "ffmpeg")
	mp3 := filepath.Join(dir, "radio.mp3")
	if out, err := exec.Command(ffmpeg, "-v", "error", "-f", "lavfi", "-i", "sine=frequency=500:sample_rate=44100:duration=3",
		"-c:a", "libmp3lame", "-b:a", "128k", "-y", mp3).CombinedOutput(); err != nil {
		t.Skipf("no libmp3lame: %v %s", err, out)
	}
	data, err := os.ReadFile(mp3)
	if err != nil {
		t.Fatal(err)
	}
	radio := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "audio/mpeg")
		_, _ = w.Write(data)
	}))
	defer radio.Close()

	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"), Loop: true})

	h.expectError("POST", "/v1/streams/"+id+"/broadcast", map[string]any{"targets": []map[string]any{{
		"output": h.ingestURL() + "/bad", "icecast_audio": "1", "icecast_url": radio.URL + "/missing\x7f"}}}, http.StatusBadRequest, "INVALID_REQUEST")
	notAudio := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html>"))
	}))
	defer notAudio.Close()
	h.expectError("POST", "/v1/streams/"+id+"/broadcast", map[string]any{"targets": []map[string]any{{
		"output": h.ingestURL() + "/bad", "icecast_audio": "1", "icecast_url": notAudio.URL}}}, http.StatusBadRequest, "INVALID_REQUEST")

	h.startTargets(id, map[string]any{"output": h.ingestURL() + "/radio", "icecast_audio": "1", "icecast_url": radio.URL + "/stream"})
	time.Sleep(5 * time.Second) // past the end of the 3 s file: the source reconnects
	cancel()
	pub.Wait()
	h.closeStream(id)

	_, msgs := h.rec.get("radio")
	var mp3Tags int
	var firstTS, lastTS uint32
	var meta map[string]any
	for _, r := range msgs {
		switch r.msg.Type {
		case 18:
			if meta == nil && strings.Contains(r.msg.Handler, "onMetaData") {
				meta = asMap(t, r.msg.Values)
			}
		case flv.TagAudio:
			at, err := flv.ParseAudioTag(r.msg.Body)
			if err != nil || at.SoundFormat != 2 {
				t.Fatalf("radio target audio: %+v %v", at, err)
			}
			if mp3Tags == 0 {
				firstTS = r.msg.Timestamp
			}
			lastTS = r.msg.Timestamp
			mp3Tags++
		}
	}
	t.Logf("icecast: %d MP3 tags at %d..%d ms; onMetaData audiocodecid %v", mp3Tags, firstTS, lastTS, meta["audiocodecid"])
	if mp3Tags < 100 {
		t.Fatalf("%d MP3 tags at the ingest", mp3Tags)
	}
	if lastTS-firstTS < 3500 {
		t.Errorf("MP3 audio spans %d ms: the source was not reconnected", lastTS-firstTS)
	}
	frames := videoFramesOf(t, msgs)
	if len(frames) == 0 || firstTS > frames[0].ts+1000 {
		t.Errorf("MP3 audio starts at %d ms, not near the video", firstTS)
	}
}

// TestAudioEncoderPerBitrate: targets at the same bit rate share one
// encoder (their AAC frames are byte for byte the same), another bit rate
// gets its own, each holds its bit rate on noise, and the sequence header
// says AAC-LC 48 kHz stereo.
func TestAudioEncoderPerBitrate(t *testing.T) {
	parallel(t, heavy)
	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: makeNoiseOpus(t, t.TempDir()), Loop: true})
	h.startTargets(id,
		map[string]any{"output": h.ingestURL() + "/enc1"},
		map[string]any{"output": h.ingestURL() + "/enc2", "audiobitrate": 128000},
		map[string]any{"output": h.ingestURL() + "/enc3", "audiobitrate": 64000})
	time.Sleep(4 * time.Second)
	cancel()
	pub.Wait()
	time.Sleep(300 * time.Millisecond)
	h.closeStream(id)

	frames := map[string]map[uint32][]byte{} // by target, AAC raw frames by timestamp
	for _, name := range []string{"enc1", "enc2", "enc3"} {
		_, msgs := h.rec.get(name)
		frames[name] = map[uint32][]byte{}
		for _, r := range msgs {
			if r.msg.Type != flv.TagAudio {
				continue
			}
			body := r.msg.Body
			if len(body) < 2 || body[0]>>4 != 10 {
				t.Fatalf("%s: audio tag of format %d, want AAC (10)", name, body[0]>>4)
			}
			if body[1] == 0 {
				var asc mpeg4audio.AudioSpecificConfig
				if err := asc.Unmarshal(body[2:]); err != nil {
					t.Fatalf("%s: sequence header: %v", name, err)
				}
				if asc.Type != mpeg4audio.ObjectTypeAACLC || asc.SampleRate != 48000 || asc.ChannelConfig != 2 {
					t.Errorf("%s: sequence header %+v, want AAC-LC 48 kHz stereo", name, asc)
				}
				continue
			}
			frames[name][r.msg.Timestamp] = body[2:]
		}
	}
	mean := func(name string) float64 {
		n := 0
		for _, f := range frames[name] {
			n += len(f)
		}
		return float64(n) / float64(max(len(frames[name]), 1))
	}
	same, differ := 0, 0
	for ts, f := range frames["enc1"] {
		if g, ok := frames["enc2"][ts]; ok {
			if bytes.Equal(f, g) {
				same++
			} else {
				differ++
			}
		}
	}
	t.Logf("AAC frames: enc1 %d (mean %.0f bytes), enc2 %d, enc3 %d (mean %.0f bytes); enc1 and enc2 identical at %d timestamps, different at %d",
		len(frames["enc1"]), mean("enc1"), len(frames["enc2"]), len(frames["enc3"]), mean("enc3"), same, differ)
	if len(frames["enc1"]) < 100 || len(frames["enc3"]) < 100 {
		t.Fatal("too few AAC frames")
	}
	if same < 100 || differ > 0 {
		t.Errorf("targets at one bit rate do not share an encoder: %d frames identical, %d different", same, differ)
	}
	// Noise takes every bit it is given: 341 bytes per frame at 128 kbit/s,
	// 171 at 64 kbit/s.
	for name, br := range map[string]float64{"enc1": 128000, "enc3": 64000} {
		want := br / 8 * 1024 / 48000
		if m := mean(name); m < want*0.85 || m > want*1.1 {
			t.Errorf("%s at %.0f bit/s: %.0f bytes per frame on average, want about %.0f", name, br, m, want)
		}
	}
}
