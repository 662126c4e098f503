package main

import (
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/format/mediafile"
)

// TestSinkMatchesERTMPFrames: a frame the publisher sends and the tag
// castbridge makes of it have the same digest at the sink, for every
// E-RTMP codec, so loss and latency are measured for them as for H.264.
func TestSinkMatchesERTMPFrames(t *testing.T) {
	for _, c := range []struct{ codec, file string }{
		{"vp9", "video-vp9.ivf"}, {"av1", "video-av1.ivf"}, {"hevc", "video-hevc.h265"},
	} {
		frames, err := gatewaytest.ReadVideoFrames(c.codec, mediafile.TestdataPath(c.file))
		if err != nil {
			t.Fatal(err)
		}
		ss := &sinkStream{}
		seen := map[uint64]bool{}
		for i, f := range frames[:70] {
			var body []byte
			switch c.codec {
			case "vp9":
				body = flv.AppendVP9Frame(nil, f.NALUs[0], f.IDR)
			case "av1":
				body = flv.AppendAV1Frame(nil, f.NALUs, f.IDR)
			case "hevc":
				body = flv.AppendHEVCNALUs(nil, f.NALUs, f.IDR, int32(i%2)*33) // CodedFrames and CodedFramesX
			}
			ss.onExFrame(body, time.Now())
			want := mediafile.FrameDigest(c.codec, f.NALUs)
			if got := ss.recv[len(ss.recv)-1].digest; got != want {
				t.Fatalf("%s frame %d: digest %x at the sink, %x sent", c.codec, i, got, want)
			}
			seen[want] = true
		}
		ss.onExFrame(flv.AppendExVideoSequenceStart(nil, flv.FourCCVP9, []byte{1}), time.Now())
		if len(ss.recv) != 70 || len(seen) < 65 {
			t.Fatalf("%s: %d frames recorded, %d distinct digests", c.codec, len(ss.recv), len(seen))
		}
	}
}
