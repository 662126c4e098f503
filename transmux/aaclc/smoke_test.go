package aaclc

import (
	"testing"
	"time"
)

func TestSmoke(t *testing.T) {
	needFFmpeg(t)
	sigs := map[string]signal{
		"sine":  sine(48000, 2, 10, 1000, -10),
		"two":   twoTone(48000, 10),
		"white": noise(48000, 2, 10, -20, false, 1),
		"pink":  noise(48000, 2, 10, -20, true, 2),
		"sweep": sweep(48000, 2, 10, 20, 20000),
		"music": music(48000, 10),
	}
	for _, br := range []int{64000, 128000, 192000} {
		for name, s := range sigs {
			start := time.Now()
			frames := encodeSignal(t, Config{SampleRate: 48000, Channels: 2, Bitrate: br}, s)
			el := time.Since(start)
			total, mx := 0, 0
			for _, f := range frames {
				total += len(f)
				mx = max(mx, len(f))
			}
			dec := ffmpegDecode(t, adts(t, 48000, 2, frames), 48000, 2)
			v := snr(s.pcm, dec, 2, 1024, 2048)
			line := ""
			if br == 128000 {
				ref := ffmpegReference(t, s, br)
				rd, rv := bestDelay(s.pcm, ref, 2, 1000, 1100, 2048)
				line = " ffmpeg snr " + ftoa(rv) + " delay " + itoa(rd)
			}
			t.Logf("%d %-6s kbps %.1f max %d us/frame %.1f snr %.2f%s", br, name, float64(total*8)/float64(len(frames))*48000/1024/1000, mx*8, float64(el.Microseconds())/float64(len(frames)), v, line)
		}
	}
}
