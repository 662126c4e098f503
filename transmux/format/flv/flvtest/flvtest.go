// Package flvtest provides helpers for tests that need a real H.264 stream or
// need to check an FLV file with ffprobe. Tests using it are skipped when
// ffmpeg/ffprobe are not installed.
package flvtest

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strconv"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// AccessUnit is one coded picture.
type AccessUnit struct {
	NALUs    [][]byte
	Keyframe bool
}

// Stream is an H.264 elementary stream split into access units.
type Stream struct {
	SPS, PPS []byte
	Units    []AccessUnit
}

// RequireFFmpeg skips the test when ffmpeg or ffprobe is missing.
func RequireFFmpeg(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
}

// GenerateH264 encodes seconds of a 320x240 30 fps test pattern with libx264
// (baseline) and returns it split into access units.
func GenerateH264(t testing.TB, seconds int) Stream {
	t.Helper()
	RequireFFmpeg(t)
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=30",
		"-t", strconv.Itoa(seconds), "-pix_fmt", "yuv420p", "-c:v", "libx264", "-profile:v", "baseline",
		"-g", "30", "-bsf:v", "h264_mp4toannexb", "-f", "h264", "-")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, stderr.String())
	}
	nalus := splitAnnexB(out)
	var s Stream
	var cur *AccessUnit
	prevVCL := false
	for _, n := range nalus {
		typ := h264.NALUType(n[0] & 0x1f)
		vcl := typ == h264.NALUTypeIDR || typ == h264.NALUTypeNonIDR
		// A new access unit starts at a non-VCL NALU following a slice, or
		// at a slice with first_mb_in_slice == 0 following a slice.
		if cur == nil || (prevVCL && (!vcl || (len(n) > 1 && n[1]&0x80 != 0))) {
			s.Units = append(s.Units, AccessUnit{})
			cur = &s.Units[len(s.Units)-1]
		}
		switch typ {
		case h264.NALUTypeSPS:
			if s.SPS == nil {
				s.SPS = n
			}
		case h264.NALUTypePPS:
			if s.PPS == nil {
				s.PPS = n
			}
		case h264.NALUTypeIDR:
			cur.Keyframe = true
		}
		cur.NALUs = append(cur.NALUs, n)
		prevVCL = vcl
	}
	if s.SPS == nil || s.PPS == nil || len(s.Units) == 0 {
		t.Fatalf("generated stream lacks SPS/PPS/frames")
	}
	return s
}

// Probe is what ffprobe reports about the first video stream of a file.
type Probe struct {
	CodecName string `json:"codec_name"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
	Frames    int    // nb_read_frames
}

// ProbeVideo runs ffprobe -count_frames on path.
func ProbeVideo(t testing.TB, path string) Probe {
	t.Helper()
	RequireFFmpeg(t)
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames",
		"-select_streams", "v:0", "-show_streams", "-of", "json", path).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("ffprobe %s: %v: %s", path, err, stderr)
	}
	var res struct {
		Streams []struct {
			Probe
			NbReadFrames string `json:"nb_read_frames"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("ffprobe output: %v", err)
	}
	if len(res.Streams) == 0 {
		t.Fatalf("ffprobe found no video stream in %s", path)
	}
	p := res.Streams[0].Probe
	p.Frames, _ = strconv.Atoi(res.Streams[0].NbReadFrames)
	return p
}

// splitAnnexB splits a whole elementary stream at its start codes
// (mediacommon's AnnexB caps the count at one access unit's worth).
func splitAnnexB(b []byte) [][]byte {
	var out [][]byte
	start := -1
	for i := 0; i+2 < len(b); {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				end := i
				for end > start && b[end-1] == 0 {
					end--
				}
				out = append(out, b[start:end])
			}
			i += 3
			start = i
			continue
		}
		i++
	}
	if start >= 0 && start < len(b) {
		out = append(out, b[start:])
	}
	return out
}

// NestedCommand is an AMF0 command message (name, transaction id 1) whose
// command object nests depth objects: what overflowed go-amf0's stack, for
// the tests of both RTMP ends.
func NestedCommand(name string, depth int) []byte {
	b := []byte{0x02, 0, byte(len(name))}
	b = append(b, name...)
	b = append(b, 0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0)
	for range depth {
		b = append(b, 0x03, 0x00, 0x01, 'a')
	}
	b = append(b, 0x05)
	for range depth {
		b = append(b, 0x00, 0x00, 0x09)
	}
	return b
}
