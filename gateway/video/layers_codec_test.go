package video

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/castbridge/castbridge/gateway/avclock"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/format/mediafile"
)

// encodeLayerClip encodes 2 s of a test pattern at width x height, 30 fps,
// a key frame every 30 frames, as codec ("vp9", "av1") into an IVF file
// with ffmpeg, and returns its payloads per frame, packetized by pion's
// payloader (as a browser's packetizer does).
func encodeLayerClip(t *testing.T, codec string, width, height int) [][][]byte {
	t.Helper()
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffmpeg is required under CI")
		}
		t.Skip("ffmpeg not installed")
	}
	path := filepath.Join(t.TempDir(), fmt.Sprintf("%s-%d.ivf", codec, height))
	enc := []string{"-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"}
	if codec == "av1" {
		enc = []string{"-c:v", "libaom-av1", "-usage", "realtime", "-cpu-used", "8"}
	}
	args := append([]string{"-nostdin", "-v", "error", "-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=30", width, height),
		"-frames:v", "60", "-g", "30", "-keyint_min", "30", "-b:v", "200k"}, enc...)
	if out, err := exec.Command(ffmpeg, append(args, "-f", "ivf", path)...).CombinedOutput(); err != nil {
		t.Skipf("ffmpeg cannot encode %s: %v %s", codec, err, out)
	}
	frames, err := mediafile.ReadIVFFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][][]byte
	switch codec {
	case "vp9":
		pay := &codecs.VP9Payloader{InitialPictureIDFn: func() uint16 { return 1 }}
		for _, f := range frames {
			out = append(out, pay.Payload(1200, f))
		}
	case "av1":
		pay := &codecs.AV1Payloader{}
		for _, tu := range frames {
			obus, err := mediafile.SplitAV1OBUs(tu)
			if err != nil {
				t.Fatal(err)
			}
			var p [][]byte
			for _, o := range obus {
				if flv.AV1OBUType(o) != flv.AV1OBUTemporalDelimiter {
					p = append(p, pay.Payload(1200, o)...)
				}
			}
			out = append(out, p)
		}
	}
	if len(out) != 60 {
		t.Fatalf("%s %dx%d: %d frames", codec, width, height, len(out))
	}
	return out
}

// TestCodecSimulcastLayers: a VP9 or AV1 publisher's three simulcast
// layers (160x90, 320x180, 640x360, on libwebrtc's shared RTP clock, key
// frames every second). The pipeline forwards the largest from its first
// key frame; when it stops, the next one from that layer's key frame, and
// the largest again at its key frame when it returns; the layer switched to
// is asked for a key frame; every switch lands on a key frame with that
// layer's configuration, and the timestamps keep the shared clock.
func TestCodecSimulcastLayers(t *testing.T) {
	for _, codec := range []media.VideoCodec{media.CodecVP9, media.CodecAV1} {
		t.Run(string(codec), func(t *testing.T) {
			sizes := [3][2]int{{160, 90}, {320, 180}, {640, 360}}
			var clips [3][][][]byte
			for i, s := range sizes {
				clips[i] = encodeLayerClip(t, string(codec), s[0], s[1])
			}
			fb := &pliFeedback{plis: map[uint32]int{}}
			sink := &recordingSink{}
			v := New(Config{Feedback: fb, Clock: avclock.New(), Frames: media.NewFramePool(),
				KeyframeInterval: 10 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			t.Cleanup(v.Close)
			v.SetSink(sink)
			var ls [3]*Layer
			var seq [3]uint16
			for i, rid := range []string{"q", "h", "f"} {
				l, err := v.AddCodecLayer(rid, uint32(0x2000+i), codec)
				if err != nil {
					t.Fatal(err)
				}
				ls[i], seq[i] = l, uint16(5000*(i+1))
			}
			if _, err := v.AddCodecLayer("x", 0x3000, media.CodecHEVC); err == nil {
				t.Error("an H.265 layer was taken")
			}
			if v.Codec() != codec {
				t.Fatalf("pipeline codec %s", v.Codec())
			}
			t0 := time.Unix(1_700_000_000, 0)
			var sentAt []int // frame time of each frame the sink got
			top := uint32(0x2002)
			askedTop := false
			for k := range 170 {
				now := t0.Add(time.Duration(k) * time.Second / 30)
				for i := range ls {
					if i == 2 && k >= 45 && k < 105 {
						continue // the top layer stops for 2 s
					}
					for j, pl := range clips[i][k%60] {
						raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 98, SequenceNumber: seq[i],
							Timestamp: 90000 + uint32(k*3000), SSRC: uint32(0x2000 + i), Marker: j == len(clips[i][k%60])-1}, Payload: pl}).Marshal()
						if err != nil {
							t.Fatal(err)
						}
						seq[i]++
						ls[i].HandlePacket(raw, now)
					}
				}
				if k >= 105 && fb.take(top) {
					askedTop = true
				}
				for len(sentAt) < len(sink.frames) {
					sentAt = append(sentAt, k)
				}
			}
			// The runs of one resolution, each from a key frame.
			type run struct {
				size string
				from int // frame time
				n    int
				ps   *media.ParamSet
			}
			var runs []run
			for i, f := range sink.frames {
				size := fmt.Sprintf("%dx%d", f.params.Width, f.params.Height)
				if len(runs) == 0 || runs[len(runs)-1].size != size {
					if !f.key {
						t.Errorf("the switch to %s at frame time %d is not at a key frame", size, sentAt[i])
					}
					runs = append(runs, run{size, sentAt[i], 0, f.params})
				}
				if f.params != runs[len(runs)-1].ps {
					t.Errorf("frame %d: a new parameter set within a layer's run (a sequence header too many)", i)
				}
				runs[len(runs)-1].n++
				// At a switch the old layer's frame and the new one's key
				// frame share a frame time (the old one went out first).
				if i > 0 && (f.ts < sink.frames[i-1].ts || f.ts == sink.frames[i-1].ts && runs[len(runs)-1].n > 1) {
					t.Errorf("frame %d at %d ms after %d ms", i, f.ts, sink.frames[i-1].ts)
				}
				if d := int(f.ts) - int(sink.frames[0].ts); abs(d-(sentAt[i]-sentAt[0])*1000/30) > 2 {
					t.Errorf("frame %d (frame time %d) at %d ms from the first, off the shared clock", i, sentAt[i], d)
				}
			}
			t.Logf("%s: runs %+v, switches %d", codec, runs, v.layers.Load().switches.Load())
			// The first layer's key frame starts the stream (the others'
			// sizes are not known yet); the top one takes over at its
			// next key frame.
			want := []string{"160x90", "640x360", "320x180", "640x360"}
			if len(runs) != len(want) {
				t.Fatalf("resolutions forwarded %+v, want %v", runs, want)
			}
			for i, r := range runs {
				if r.size != want[i] {
					t.Errorf("run %d is %s, want %s", i, r.size, want[i])
				}
			}
			// Key frames are at 0, 30, ...: the top layer is forwarded from
			// 30 and back at 120; the middle one takes over at its key
			// frame 60 or 90, once the top has been silent for the layer
			// timeout (600 ms).
			if runs[0].from != 0 || runs[1].from != 30 || (runs[2].from != 60 && runs[2].from != 90) || runs[3].from != 120 {
				t.Errorf("switches at frame times %d, %d, %d, %d", runs[0].from, runs[1].from, runs[2].from, runs[3].from)
			}
			if !askedTop {
				t.Error("the returning top layer was not asked for a key frame")
			}
			if runs[1].n != 15 || runs[3].n != 50 {
				t.Errorf("%d and %d frames of the top layer, want 30..44 and 120..169", runs[1].n, runs[3].n)
			}
			layers, switches := v.Layers(t0.Add(170 * time.Second / 30))
			if switches != 3 || len(layers) != 3 || !layers[2].Forwarded || layers[2].Width != 640 || layers[0].Height != 90 {
				t.Errorf("layers %+v, %d switches", layers, switches)
			}
		})
	}
}

func abs(d int) int {
	if d < 0 {
		return -d
	}
	return d
}
