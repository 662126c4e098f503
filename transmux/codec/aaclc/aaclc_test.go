package aaclc

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
)

var stereo128 = Config{SampleRate: 48000, Channels: 2, Bitrate: 128000}

// TestFFmpegDecodesCleanly encodes 10 s of several signals and has ffmpeg
// decode them: no error output at all, and one frame of samples per frame.
func TestFFmpegDecodesCleanly(t *testing.T) {
	needFFmpeg(t)
	square := sine(48000, 2, 10, 500, 0)
	for i, v := range square.pcm {
		square.pcm[i] = 32767
		if v < 0 {
			square.pcm[i] = -32768
		}
	}
	for _, tc := range []struct {
		name string
		sig  signal
	}{
		{"sine", sine(48000, 2, 10, 1000, -10)},
		{"two-tone", twoTone(48000, 10)},
		{"white", noise(48000, 2, 10, -15, false, 1)},
		{"pink", noise(48000, 2, 10, -15, true, 2)},
		{"sweep", sweep(48000, 2, 10, 20, 24000)},
		{"music", music(48000, 10)},
		{"silence", signal{48000, 2, make([]int16, 10*48000*2)}},
		{"full-scale square", square},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frames := encodeSignal(t, stereo128, tc.sig)
			dec := ffmpegDecode(t, adts(t, 48000, 2, frames), 48000, 2)
			if want := len(frames) * FrameSamples * 2; len(dec) != want {
				t.Fatalf("decoded %d samples, want %d", len(dec), want)
			}
		})
	}
}

// TestSilence checks that digital silence costs a few bytes a frame and
// decodes to exact zeros.
func TestSilence(t *testing.T) {
	needFFmpeg(t)
	s := signal{48000, 2, make([]int16, 2*48000*2)}
	frames := encodeSignal(t, stereo128, s)
	for i, f := range frames {
		// CPE with max_sfb 0 and END: 46 bits.
		if len(f) > 6 {
			t.Fatalf("silent frame %d is %d bytes", i, len(f))
		}
	}
	for i, v := range ffmpegDecode(t, adts(t, 48000, 2, frames), 48000, 2) {
		if v != 0 {
			t.Fatalf("sample %d decodes to %d, want 0", i, v)
		}
	}
}

// TestAlignment puts a short tone burst at a known sample and finds it in
// ffmpeg's output exactly one frame (1024 samples) later; the first frame
// decodes to silence but for the pre-echo of an onset in frame 1.
func TestAlignment(t *testing.T) {
	needFFmpeg(t)
	const at, length = 30011, 480 // not frame aligned
	s := signal{48000, 2, make([]int16, 48000*2)}
	for i := range length {
		env := 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/length)
		v := int16(20000 * env * math.Sin(2*math.Pi*3000*float64(i)/48000))
		s.pcm[2*(at+i)] = v
		s.pcm[2*(at+i)+1] = -v
	}
	frames := encodeSignal(t, stereo128, s)
	dec := ffmpegDecode(t, adts(t, 48000, 2, frames), 48000, 2)
	best, bestCorr := 0, math.Inf(-1)
	for lag := 900; lag <= 1150; lag++ {
		corr := 0.0
		for i := at; i < at+length; i++ {
			corr += float64(s.pcm[2*i])*float64(dec[2*(i+lag)]) + float64(s.pcm[2*i+1])*float64(dec[2*(i+lag)+1])
		}
		if corr > bestCorr {
			best, bestCorr = lag, corr
		}
	}
	t.Logf("burst found at delay %d", best)
	if best < FrameSamples-2 || best > FrameSamples+2 {
		t.Fatalf("delay %d, want %d ± 2", best, FrameSamples)
	}

	// A loud signal from sample 0 on: frame 0 decodes to near silence
	// (the only sound in it is frame 1's quantization noise that the
	// long window spreads back before the onset), the signal starts with
	// frame 1.
	loud := sine(48000, 2, 1, 1000, -3)
	dec = ffmpegDecode(t, adts(t, 48000, 2, encodeSignal(t, stereo128, loud)), 48000, 2)
	var e0, e1 float64
	for i := range FrameSamples * 2 {
		e0 += float64(dec[i]) * float64(dec[i])
		e1 += float64(dec[FrameSamples*2+i]) * float64(dec[FrameSamples*2+i])
	}
	ratio := 10 * math.Log10(e0/e1)
	t.Logf("frame 0 decodes %.1f dB below frame 1", ratio)
	if ratio > -25 {
		t.Fatalf("frame 0 decodes only %.1f dB below frame 1, want silence", ratio)
	}
}

// TestQuality measures SNR after a round trip through ffmpeg's decoder
// for ours and for ffmpeg's own encoder at the same rate, logs both, and
// holds ours to ffmpeg's on tonal signals. Noise is low-passed to 15 kHz
// first so that the SNR measures the coded passband.
func TestQuality(t *testing.T) {
	needFFmpeg(t)
	const seconds = 10
	for _, tc := range []struct {
		name   string
		sig    signal
		tonal  bool
		minSNR float64 // absolute floor for ours
	}{
		{"sine 1 kHz −10 dBFS", sine(48000, 2, seconds, 1000, -10), true, 60},
		{"two-tone 440/660 Hz", twoTone(48000, seconds), true, 60},
		{"sweep 50 Hz–15 kHz", sweep(48000, 2, seconds, 50, 15000), true, 50},
		{"white noise", lowpass(noise(48000, 2, seconds, -15, false, 1), 15000), false, 7},
		{"pink noise", lowpass(noise(48000, 2, seconds, -15, true, 2), 15000), false, 10},
		{"tones + pink noise", music(48000, seconds), false, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frames := encodeSignal(t, stereo128, tc.sig)
			dec := ffmpegDecode(t, adts(t, 48000, 2, frames), 48000, 2)
			ours := snr(tc.sig.pcm, dec, 2, FrameSamples, 4096)
			ref := ffmpegReference(t, tc.sig, 128000)
			// FFmpeg's encoder also primes one frame; ±24 samples covers a
			// little slack without the sine's period making it ambiguous.
			refDelay, theirs := bestDelay(tc.sig.pcm, ref, 2, FrameSamples-24, FrameSamples+24, 4096)
			bits := 0
			for _, f := range frames {
				bits += 8 * len(f)
			}
			kbps := float64(bits) / float64(len(frames)) * 48000 / FrameSamples / 1000
			t.Logf("SNR ours %.1f dB (%.0f kbit/s), ffmpeg -c:a aac -b:a 128k %.1f dB (delay %d)", ours, kbps, theirs, refDelay)
			if ours < tc.minSNR {
				t.Errorf("SNR %.1f dB, want ≥ %.0f", ours, tc.minSNR)
			}
			if tc.tonal && ours < theirs-6 {
				t.Errorf("SNR %.1f dB is more than 6 dB below ffmpeg's %.1f dB", ours, theirs)
			}
		})
	}
}

// TestBitrate holds the average rate over 10 s of noise and of tones with
// noise to ±10% of the target and every frame to 6144 bits per channel.
func TestBitrate(t *testing.T) {
	sigs := []struct {
		name string
		sig  signal
	}{
		{"white", noise(48000, 2, 10, -15, false, 11)},
		{"music", music(48000, 10)},
	}
	for _, target := range []int{64000, 128000, 192000} {
		for _, s := range sigs {
			frames := encodeSignal(t, Config{SampleRate: 48000, Channels: 2, Bitrate: target}, s.sig)
			frames = frames[:len(frames)-1] // the flushing frame is silence
			bits, peak := 0, 0
			for _, f := range frames {
				bits += 8 * len(f)
				peak = max(peak, 8*len(f))
			}
			rate := float64(bits) / float64(len(frames)) * 48000 / FrameSamples
			t.Logf("%s at %d: %.0f bit/s (%+.2f%%), largest frame %d bits", s.name, target, rate, 100*(rate/float64(target)-1), peak)
			if math.Abs(rate/float64(target)-1) > 0.10 {
				t.Errorf("%s at %d: average %.0f bit/s, off by more than 10%%", s.name, target, rate)
			}
			if peak > 2*maxChannelBits {
				t.Errorf("%s at %d: frame of %d bits", s.name, target, peak)
			}
		}
	}
}

// TestOtherFormats decodes mono and 44.1/32 kHz streams: a 1 kHz sine comes
// back one frame late with a high SNR.
func TestOtherFormats(t *testing.T) {
	needFFmpeg(t)
	for _, cfg := range []Config{
		{SampleRate: 48000, Channels: 1, Bitrate: 64000},
		{SampleRate: 44100, Channels: 2, Bitrate: 128000},
		{SampleRate: 44100, Channels: 1, Bitrate: 96000},
		{SampleRate: 32000, Channels: 2, Bitrate: 96000},
	} {
		s := sine(cfg.SampleRate, cfg.Channels, 5, 1000, -10)
		frames := encodeSignal(t, cfg, s)
		dec := ffmpegDecode(t, adts(t, cfg.SampleRate, cfg.Channels, frames), cfg.SampleRate, cfg.Channels)
		// Within less than half the sine's period, so the best delay is
		// unambiguous.
		delay, v := bestDelay(s.pcm, dec, cfg.Channels, FrameSamples-12, FrameSamples+12, 4096)
		t.Logf("%+v: SNR %.1f dB at delay %d", cfg, v, delay)
		if delay != FrameSamples || v < 40 {
			t.Errorf("%+v: SNR %.1f dB at delay %d, want ≥ 40 dB at %d", cfg, v, delay, FrameSamples)
		}
	}
}

func TestAudioSpecificConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want []byte
	}{
		{stereo128, []byte{0x11, 0x90}},
		{Config{SampleRate: 44100, Channels: 1}, []byte{0x12, 0x08}},
		{Config{SampleRate: 32000, Channels: 2}, []byte{0x12, 0x90}},
	} {
		e, err := NewEncoder(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		got := e.AudioSpecificConfig()
		if !bytes.Equal(got, tc.want) {
			t.Errorf("%+v: % x, want % x", tc.cfg, got, tc.want)
		}
		var asc mpeg4audio.AudioSpecificConfig
		if err := asc.Unmarshal(got); err != nil {
			t.Fatal(err)
		}
		if asc.Type != mpeg4audio.ObjectTypeAACLC || asc.SampleRate != tc.cfg.SampleRate || int(asc.ChannelConfig) != tc.cfg.Channels {
			t.Errorf("%+v: parsed as %+v", tc.cfg, asc)
		}
	}
}

func TestBadInput(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{SampleRate: 22050, Channels: 2},
		{SampleRate: 96000, Channels: 2},
		{SampleRate: 48000, Channels: 0},
		{SampleRate: 48000, Channels: 3},
		{SampleRate: 48000, Channels: -1},
		{SampleRate: 48000, Channels: 2, Bitrate: -1},
		{SampleRate: 48000, Channels: 2, Bitrate: 8000},
		{SampleRate: 48000, Channels: 1, Bitrate: 300000},
	} {
		if e, err := NewEncoder(cfg); err == nil || e != nil {
			t.Errorf("%+v: no error", cfg)
		} else {
			t.Logf("%+v: %v", cfg, err)
		}
	}
	e, err := NewEncoder(stereo128)
	if err != nil {
		t.Fatal(err)
	}
	dst := []byte{1, 2, 3}
	for _, n := range []int{0, 1, FrameSamples, 2*FrameSamples - 1, 2*FrameSamples + 1, 4 * FrameSamples} {
		out, err := e.Encode(dst, make([]int16, n), make([]int16, 2*LookAheadSamples))
		if !errors.Is(err, ErrPCMLength) {
			t.Errorf("%d samples: err %v, want ErrPCMLength", n, err)
		}
		if !bytes.Equal(out, dst) {
			t.Errorf("%d samples: dst changed to % x", n, out)
		}
	}
	if _, err := e.Encode(nil, nil, nil); !errors.Is(err, ErrPCMLength) {
		t.Errorf("nil pcm: err %v", err)
	}
	for _, n := range []int{0, LookAheadSamples, 2*LookAheadSamples - 1, 2 * FrameSamples} {
		if out, err := e.Encode(dst, make([]int16, 2*FrameSamples), make([]int16, n)); !errors.Is(err, ErrPCMLength) || !bytes.Equal(out, dst) {
			t.Errorf("look-ahead of %d samples: err %v, dst % x", n, err, out)
		}
	}
}

// TestFullScale encodes the loudest possible input, a ±full-scale square
// wave and full-scale noise: nothing overflows (the quantizer's 8191 limit
// holds, Encode's own bit-count check passes) and the square comes back.
func TestFullScale(t *testing.T) {
	needFFmpeg(t)
	s := sine(48000, 2, 3, 441, 0)
	for i, v := range s.pcm {
		s.pcm[i] = 32767
		if v < 0 {
			s.pcm[i] = -32768
		}
	}
	mono := make([]int16, len(s.pcm)/2)
	for i := range mono {
		mono[i] = s.pcm[2*i]
	}
	for _, cfg := range []Config{
		stereo128,
		{SampleRate: 48000, Channels: 2, Bitrate: 256000},
		{SampleRate: 48000, Channels: 1, Bitrate: 32000},
	} {
		sig := s
		if cfg.Channels == 1 {
			sig = signal{48000, 1, mono}
		}
		frames := encodeSignal(t, cfg, sig)
		dec := ffmpegDecode(t, adts(t, 48000, cfg.Channels, frames), 48000, cfg.Channels)
		v := snr(sig.pcm, dec, cfg.Channels, FrameSamples, 4096)
		t.Logf("%+v: square wave SNR %.1f dB", cfg, v)
		if v < 10 {
			t.Errorf("%+v: square wave SNR %.1f dB", cfg, v)
		}
	}
	e, err := NewEncoder(Config{SampleRate: 48000, Channels: 1, Bitrate: 288000})
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, FrameSamples)
	for i := range pcm {
		pcm[i] = int16(-32768 + 65535*(i&1))
	}
	for range 20 {
		f, err := e.Encode(nil, pcm, pcm[:LookAheadSamples])
		if err != nil {
			t.Fatal(err)
		}
		if len(f)*8 > maxChannelBits {
			t.Fatalf("frame of %d bits", len(f)*8)
		}
	}
}

func TestEncodeAllocatesNothing(t *testing.T) {
	s := music(48000, 1)
	e, err := NewEncoder(stereo128)
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, 0, 2*maxChannelBits/8)
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		f := (i % s.frames()) * 2 * FrameSamples
		i++
		next := (i % s.frames()) * 2 * FrameSamples
		if _, err := e.Encode(dst[:0], s.pcm[f:f+2*FrameSamples], s.pcm[next:next+2*LookAheadSamples]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per frame", allocs)
	}
}
