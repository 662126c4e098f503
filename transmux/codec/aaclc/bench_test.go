package aaclc

import "testing"

// BenchmarkEncode measures one stereo 48 kHz frame at 128 kbit/s.
func BenchmarkEncode(b *testing.B) {
	for _, tc := range []struct {
		name string
		sig  signal
	}{
		{"music", music(48000, 4)},
		{"noise", noise(48000, 2, 4, -20, false, 5)},
		{"silence", signal{48000, 2, make([]int16, 4*48000*2)}},
		// Clicks every 250 ms: a quarter of the frames are short or
		// transitions.
		{"clicks", clicks(4 * 48000)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e, err := NewEncoder(Config{SampleRate: 48000, Channels: 2, Bitrate: 128000})
			if err != nil {
				b.Fatal(err)
			}
			n := FrameSamples * 2
			frames := tc.sig.frames()
			dst := make([]byte, 0, maxChannelBits*2/8)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				f := (i % frames) * n
				next := ((i + 1) % frames) * n
				if _, err := e.Encode(dst[:0], tc.sig.pcm[f:f+n], tc.sig.pcm[next:next+2*LookAheadSamples]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
