package aaclc

import (
	"encoding/binary"
	"testing"
)

// FuzzEncode encodes arbitrary bytes as PCM, several frames in a row to
// exercise the overlap and rate-control state, under a configuration the
// input picks. Encode must neither fail nor panic, and every frame must
// stay within the decoder's 6144 bits per channel.
func FuzzEncode(f *testing.F) {
	f.Add(uint8(0), []byte{})
	f.Add(uint8(1), []byte{0xff, 0x7f, 0x00, 0x80})
	f.Add(uint8(5), make([]byte, 4096))
	f.Fuzz(func(t *testing.T, sel uint8, data []byte) {
		configs := []Config{
			{SampleRate: 48000, Channels: 2, Bitrate: 128000},
			{SampleRate: 48000, Channels: 1, Bitrate: 16000},
			{SampleRate: 44100, Channels: 2, Bitrate: 32000},
			{SampleRate: 32000, Channels: 1, Bitrate: 192000},
			{SampleRate: 48000, Channels: 2, Bitrate: 576000},
			{SampleRate: 44100, Channels: 1, Bitrate: 64000},
		}
		cfg := configs[int(sel)%len(configs)]
		e, err := NewEncoder(cfg)
		if err != nil {
			t.Fatal(err)
		}
		n := FrameSamples * cfg.Channels
		pcm := make([]int16, n)
		var dst []byte
		for frame := range 4 {
			// Cycle through the input; an empty input gives silence.
			for i := range pcm {
				k := 2 * (frame*n + i)
				if len(data) >= 2 {
					k %= len(data) - 1
					pcm[i] = int16(binary.LittleEndian.Uint16(data[k:]))
				}
			}
			out, err := e.Encode(dst[:0], pcm, pcm[len(pcm)-LookAheadSamples*cfg.Channels:])
			if err != nil {
				t.Fatalf("frame %d: %v", frame, err)
			}
			if len(out) < 4 || len(out)*8 > maxChannelBits*cfg.Channels {
				t.Fatalf("frame %d: %d bytes", frame, len(out))
			}
			dst = out
		}
	})
}
