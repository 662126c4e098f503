package h264black

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// needFFmpeg returns ffmpeg's path; CI must have it.
func needFFmpeg(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("ffmpeg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffmpeg is required under CI")
		}
		t.Skip("ffmpeg not installed")
	}
	return p
}

// annexB is a stream of n frames: SPS, PPS, the IDR, skip frames, with an
// IDR again at every idrEvery frames (0: never).
func annexB(p *Picture, n, idrEvery int) []byte {
	sc := []byte{0, 0, 0, 1}
	var out []byte
	out = append(append(out, sc...), p.SPS...)
	out = append(append(out, sc...), p.PPS...)
	seq := p.Sequence()
	for i := range n {
		nalu, _ := seq.Next(idrEvery > 0 && i%idrEvery == 0)
		out = append(append(out, sc...), nalu...)
	}
	return out
}

// decode decodes an Annex B stream with ffmpeg into raw 4:2:0 frames,
// failing on any decoder complaint.
func decode(t *testing.T, ffmpeg string, stream []byte) []byte {
	t.Helper()
	dir := t.TempDir()
	in := filepath.Join(dir, "black.h264")
	if err := os.WriteFile(in, stream, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ffmpeg, "-nostdin", "-v", "error", "-xerror", "-err_detect", "explode",
		"-f", "h264", "-i", in, "-f", "rawvideo", "-pix_fmt", "yuv420p", "-")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Fatalf("ffmpeg complained: %s", stderr.String())
	}
	return stdout.Bytes()
}

func TestDecodesBlack(t *testing.T) {
	ffmpeg := needFFmpeg(t)
	for _, sz := range [][2]int{{1280, 720}, {1920, 1080}, {640, 360}, {320, 240}, {176, 144}, {16, 16}, {32, 18}, {854, 480}} {
		t.Run(fmt.Sprintf("%dx%d", sz[0], sz[1]), func(t *testing.T) {
			w, h := sz[0], sz[1]
			p, err := New(w, h, 30)
			if err != nil {
				t.Fatal(err)
			}
			const frames = 40
			raw := decode(t, ffmpeg, annexB(p, frames, 17))
			size := w*h + 2*(w/2)*(h/2)
			if len(raw) != frames*size {
				t.Fatalf("decoded %d bytes, want %d frames of %d (%d)", len(raw), frames, size, frames*size)
			}
			for f := range frames {
				fr := raw[f*size : (f+1)*size]
				for i, b := range fr {
					want := byte(LumaBlack)
					if i >= w*h {
						want = ChromaBlack
					}
					if b != want {
						t.Fatalf("frame %d byte %d (of %d luma) = %d, want %d", f, i, w*h, b, want)
					}
				}
			}
		})
	}
}

// TestSizes checks the frames are as small as the design says: a skip
// frame a few bytes, the IDR about a byte per macroblock.
func TestSizes(t *testing.T) {
	p, err := New(1920, 1080, 30)
	if err != nil {
		t.Fatal(err)
	}
	mbs := 120 * 68
	if n := len(p.IDR[0]); n < mbs || n > mbs+500 {
		t.Errorf("IDR is %d bytes for %d macroblocks", n, mbs)
	}
	for fn, s := range p.P {
		if len(s) > 10 {
			t.Errorf("skip frame %d is %d bytes", fn, len(s))
		}
	}
	if p.SPS[0] != 0x67 || p.SPS[1] != 66 || p.SPS[3] != 40 {
		t.Errorf("SPS starts % x: want NAL type 7, Baseline, level 4.0", p.SPS[:4])
	}
	if p.PPS[0] != 0x68 || p.IDR[0][0] != 0x65 || p.P[1][0] != 0x41 {
		t.Errorf("NAL headers % x % x % x", p.PPS[0], p.IDR[0][0], p.P[1][0])
	}
}

func TestSequence(t *testing.T) {
	p, err := New(640, 480, 25)
	if err != nil {
		t.Fatal(err)
	}
	seq := p.Sequence()
	nalu, idr := seq.Next(false)
	if !idr || !bytes.Equal(nalu, p.IDR[0]) {
		t.Fatal("the first frame is not the IDR with idr_pic_id 0")
	}
	for fn := 1; fn < 20; fn++ {
		nalu, idr = seq.Next(false)
		if idr || !bytes.Equal(nalu, p.P[fn%16]) {
			t.Fatalf("frame %d is not the skip frame of frame_num %d", fn, fn%16)
		}
	}
	if nalu, idr = seq.Next(true); !idr || !bytes.Equal(nalu, p.IDR[1]) {
		t.Fatal("a requested IDR is not the one with idr_pic_id 1")
	}
	if nalu, _ = seq.Next(false); !bytes.Equal(nalu, p.P[1]) {
		t.Fatal("frame_num does not restart after an IDR")
	}
	if n := testing.AllocsPerRun(100, func() { seq.Next(false) }); n != 0 {
		t.Errorf("Next allocates %v times", n)
	}
}

func TestRejectsSizes(t *testing.T) {
	for _, sz := range [][2]int{{0, 720}, {1280, 0}, {1279, 720}, {1280, 719}, {-2, 4}, {4098, 2160}, {4096, 2306}} {
		if _, err := New(sz[0], sz[1], 30); err == nil {
			t.Errorf("New(%d, %d) accepted", sz[0], sz[1])
		}
	}
}

func TestEmulationPrevention(t *testing.T) {
	got := nal(3, 5, []byte{0, 0, 0, 0, 0, 3, 0, 0, 1})
	want := []byte{0x65, 0, 0, 3, 0, 0, 3, 0, 3, 0, 0, 3, 1}
	if !bytes.Equal(got, want) {
		t.Fatalf("nal = % x, want % x", got, want)
	}
}
