package aaclc

import "testing"

func TestDebugSine(t *testing.T) {
	s := sine(48000, 2, 1, 1000, -10)
	e, _ := NewEncoder(Config{SampleRate: 48000, Channels: 2, Bitrate: 64000})
	for i := 0; i < 12; i++ {
		f, err := e.Encode(nil, s.pcm[i*2048:(i+1)*2048])
		if err != nil {
			t.Fatal(err)
		}
		c := &e.chans[0]
		t.Logf("frame %d bits %d offset %d balance %.0f", i, len(f)*8, e.offset, e.balance)
		if i == 5 {
			for b := 0; b < e.maxSFB; b++ {
				t.Logf("  b%d sf %d noise %d floor %d qmax %d cb %d cost %d", b, c.sf[b], c.sfNoise[b], c.sfFloor[b], c.qmax[b], c.cb[b], c.cost[b])
			}
		}
	}
}
