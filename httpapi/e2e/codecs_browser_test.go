package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/castbridge/castbridge/transmux/format/flv"
)

// codecsBrowserResult is what httpapi/web/test/codecs.mjs writes.
type codecsBrowserResult struct {
	Failed      int
	Unavailable *string
	StreamID    string `json:"streamId"`
	Mime        string
	Frames      int
	Keys        int
	Width       int
	Height      int
	Encoder     string
}

// TestBrowserCodecs: Debian's Chromium publishes VP9 and then AV1 (fake
// camera, setCodecPreferences) into a stream created with its broadcast to
// the in-process ingest with that videocodec. Chromium sends the codec;
// the ingest gets one E-RTMP sequence start of its FourCC, then coded
// frames starting with a key frame, about as many as Chromium encoded, and
// the stream view has the codec and Chromium's picture size. A Chromium
// build without the codec's encoder skips that codec, saying so (fails
// under CI).
func TestBrowserCodecs(t *testing.T) {
	parallel(t, heavy)
	testDir, err := filepath.Abs(filepath.Join("..", "web", "test"))
	if err != nil {
		t.Fatal(err)
	}
	node, chromium := needBrowser(t, testDir)
	h := newHarness(t, harnessOptions{})
	for _, c := range []struct {
		codec, view string
		fourCC      [4]byte
	}{{"vp9", "VP9", flv.FourCCVP9}, {"av1", "AV1", flv.FourCCAV1}} {
		t.Run(c.codec, func(t *testing.T) {
			out := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			name := "chromium-" + c.codec
			var res codecsBrowserResult
			runErr := runBrowserScript(ctx, t, browserRun{node: node, chromium: chromium, dir: testDir, out: out}, &res,
				"codecs.mjs", h.srv.URL, h.ingestURL()+"/"+name, c.codec)
			if res.Unavailable != nil {
				// Debian's Chromium has libvpx and libaom; one without is
				// a broken test machine under CI, as test.sh has it.
				if os.Getenv("CI") != "" {
					t.Fatalf("this Chromium has no %s encoder (it offers %s); CI is set, so this is an error", c.codec, *res.Unavailable)
				}
				t.Skipf("this Chromium has no %s encoder (it offers %s)", c.codec, *res.Unavailable)
			}
			if runErr != nil || res.Failed > 0 {
				t.Fatalf("codecs.mjs: %v, %d checks failed (see above)", runErr, res.Failed)
			}
			time.Sleep(300 * time.Millisecond)
			var sv streamView
			h.call("GET", "/v1/streams/"+res.StreamID, nil, &sv)
			_, msgs := h.rec.get(name)
			starts, coded, keys := 0, 0, 0
			for _, r := range msgs {
				if r.msg.Type != flv.TagVideo {
					continue
				}
				vt, err := flv.ParseVideoTag(r.msg.Body)
				if err != nil || vt.FourCC != c.fourCC {
					t.Fatalf("video tag: %+v, %v", vt, err)
				}
				switch {
				case vt.SequenceStart():
					starts++
				case vt.PacketType == flv.VideoPacketTypeCodedFramesX:
					if coded == 0 && !vt.Keyframe() {
						t.Error("the first frame is not a key frame")
					}
					coded++
					if vt.Keyframe() {
						keys++
					}
				}
			}
			// The broadcast starts at the first key frame after media
			// flowed: a second or so of what Chromium encoded precedes it.
			if starts < 1 || coded < res.Frames/2 || coded > res.Frames || keys < 1 {
				t.Errorf("ingest: %d sequence starts, %d frames (%d key); Chromium encoded %d frames (%d key)", starts, coded, keys, res.Frames, res.Keys)
			}
			if sv.Video == nil || sv.Video.Codec != c.view || sv.Video.Width != res.Width || sv.Video.Height != res.Height {
				t.Errorf("stream view video %+v, Chromium sent %dx%d", sv.Video, res.Width, res.Height)
			}
			t.Logf("%s: Chromium (%s) encoded %d frames (%d key) at %dx%d; the ingest got %d sequence starts, %d frames (%d key)",
				c.codec, res.Encoder, res.Frames, res.Keys, res.Width, res.Height, starts, coded, keys)
		})
	}
}
