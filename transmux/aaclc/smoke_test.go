package aaclc

import "testing"

func TestSmoke(t *testing.T) {
	needFFmpeg(t)
	s := sine(48000, 2, 2, 1000, -10)
	frames := encodeSignal(t, Config{SampleRate: 48000, Channels: 2, Bitrate: 128000}, s)
	total := 0
	for _, f := range frames {
		total += len(f)
	}
	dec := ffmpegDecode(t, adts(t, 48000, 2, frames), 48000, 2)
	d, v := bestDelay(s.pcm, dec, 2, 1000, 1050, 2048)
	t.Logf("frames %d bytes %d kbps %.1f delay %d snr %.2f", len(frames), total, float64(total*8)/2/1000, d, v)
}
