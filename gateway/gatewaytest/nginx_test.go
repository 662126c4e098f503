package gatewaytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/castbridge/castbridge/transmux/format/mediafile"
)

func TestNginxFFmpegProbeRoundTrip(t *testing.T) {
	ffmpeg := NeedTool(t, "ffmpeg")
	NeedTool(t, "ffprobe")
	rec := t.TempDir()
	addr := StartNginx(t, rec)

	cmd := exec.Command(ffmpeg, "-nostdin", "-v", "error",
		"-fflags", "+genpts", "-framerate", "30", "-f", "h264", "-i", mediafile.TestdataPath("video.h264"),
		"-i", mediafile.TestdataPath("audio.ogg"), "-map", "0:v", "-map", "1:a",
		"-c:v", "copy", "-c:a", "aac", "-b:a", "128k",
		"-f", "flv", "rtmp://"+addr+"/live/roundtrip")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg push: %v\n%s", err, out)
	}

	// nginx finalizes the recording when the publisher disconnects
	path := filepath.Join(rec, "roundtrip.flv")
	var res ProbeResult
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if _, statErr := os.Stat(path); statErr == nil {
			res, err = Probe(path)
			if err == nil && res.Video() != nil && res.Video().NbReadFrames == 150 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("recording %s not complete: %+v, %v", path, res, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	v, a := res.Video(), res.Audio()
	if v.CodecName != "h264" || v.Width != 1280 || v.Height != 720 {
		t.Errorf("video stream %+v", *v)
	}
	if a == nil || a.CodecName != "aac" || a.SampleRate != 48000 || a.Channels != 2 || a.NbReadFrames < 200 {
		t.Errorf("audio stream %+v", a)
	}
	if res.FormatName != "flv" {
		t.Errorf("format %q", res.FormatName)
	}

	pkts, err := ProbeFrames(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 150 {
		t.Fatalf("%d video packets, want 150", len(pkts))
	}
	var keys []int
	for i, p := range pkts {
		if p.Keyframe {
			keys = append(keys, i)
		}
		if i > 0 && (p.PTSMillis-pkts[i-1].PTSMillis < 32 || p.PTSMillis-pkts[i-1].PTSMillis > 35) {
			t.Errorf("packet %d: pts step %d ms", i, p.PTSMillis-pkts[i-1].PTSMillis)
		}
	}
	if len(keys) != 2 || keys[0] != 0 || keys[1] != 135 {
		t.Errorf("keyframes at %v, want [0 135]", keys)
	}
	if errs, err := DecodeErrors(path); err != nil || errs != "" {
		t.Errorf("decode errors: %q, %v", errs, err)
	}
}

func TestDecodeErrorsReportsDamage(t *testing.T) {
	NeedTool(t, "ffmpeg")
	data, err := os.ReadFile(mediafile.TestdataPath("video.h264"))
	if err != nil {
		t.Fatal(err)
	}
	// garble the middle of the first IDR
	bad := append([]byte(nil), data...)
	for i := 2000; i < 6000; i++ {
		bad[i] ^= 0x5a
	}
	path := filepath.Join(t.TempDir(), "bad.h264")
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	errs, _ := DecodeErrors(path)
	if errs == "" {
		t.Error("no decode errors reported for a damaged stream")
	}
}
