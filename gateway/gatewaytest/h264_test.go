package gatewaytest

import (
	"bytes"
	"testing"

	"github.com/castbridge/castbridge/transmux/format/mediafile"
)

func TestPacketizeH264(t *testing.T) {
	frames, err := mediafile.ReadH264File(mediafile.TestdataPath("video.h264"))
	if err != nil {
		t.Fatal(err)
	}
	for _, separate := range []bool{false, true} {
		for _, idx := range []int{0, 1, 135} {
			f := frames[idx]
			pls := packetizeH264(f.NALUs, 1200-12, separate)
			sawSTAP := false
			for _, pl := range pls {
				if len(pl) > 1188 {
					t.Fatalf("payload of %d bytes exceeds MTU", len(pl))
				}
				if pl[0]&0x1f == 24 {
					sawSTAP = true
				}
			}
			if f.IDR && sawSTAP == separate {
				t.Errorf("separate=%v: STAP-A present=%v", separate, sawSTAP)
			}
			nalus, err := depacketizeH264(pls)
			if err != nil {
				t.Fatal(err)
			}
			if len(nalus) != len(f.NALUs) {
				t.Fatalf("got %d NALUs back, want %d", len(nalus), len(f.NALUs))
			}
			for i := range nalus {
				if !bytes.Equal(nalus[i], f.NALUs[i]) {
					t.Fatalf("NALU %d differs after round trip", i)
				}
			}
		}
	}
}

func containsFold(s, sub string) bool {
	return bytes.Contains(bytes.ToLower([]byte(s)), bytes.ToLower([]byte(sub)))
}
