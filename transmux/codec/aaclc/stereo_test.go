package aaclc

import (
	"os"
	"os/exec"
	"testing"
)

func frameBits(frames [][]byte) int {
	bits := 0
	for _, f := range frames {
		bits += 8 * len(f)
	}
	return bits
}

func noMS(e *Encoder) { e.noMS = true }

// TestMidSideDualMono: identical channels code as M/S with S empty in
// every band, which costs about half of L/R where bits are not the limit
// (tones) and buys SNR where they are (noisy music).
func TestMidSideDualMono(t *testing.T) {
	needFFmpeg(t)
	dual := func(s signal) signal {
		for i := 0; i < len(s.pcm); i += 2 {
			s.pcm[i+1] = s.pcm[i]
		}
		return s
	}
	tones := dual(twoTone(48000, 5))
	mix := dual(music(48000, 5))

	// S is all zero in every M/S band, and every band with sound is M/S,
	// in long and (drums: attacks) short frames.
	for i, sig := range []signal{mix, dualMono(5 * 48000)} {
		e, err := NewEncoder(stereo128)
		if err != nil {
			t.Fatal(err)
		}
		shorts := 0
		for f := 0; f+2*FrameSamples <= len(sig.pcm); f += 2 * FrameSamples {
			if _, err := e.Encode(nil, sig.pcm[f:f+2*FrameSamples], aheadOf(sig.pcm, f+2*FrameSamples, 2)); err != nil {
				t.Fatal(err)
			}
			if e.chans[0].seq == eightShort {
				shorts++
			}
			l := e.chans[0].lay
			for g := range l.groups {
				for b := g * l.per; b < g*l.per+e.chans[0].codedSFB; b++ {
					if e.chans[0].cb[b] != zeroHCB && !e.msUsed[b] {
						t.Fatalf("frame %d band %d: coded L/R", f/(2*FrameSamples), b)
					}
					if e.chans[1].cb[b] != zeroHCB {
						t.Fatalf("frame %d band %d: S has codebook %d, want ZERO_HCB", f/(2*FrameSamples), b, e.chans[1].cb[b])
					}
				}
			}
		}
		t.Logf("%d short frames", shorts)
		if i == 1 && shorts == 0 {
			t.Error("dual-mono drums: no short frames, the short M/S path went untested")
		}
	}

	// Tones need fewer bits than the rate at the finest quantization, and
	// only M/S, at about half the bits, would get the floor's relief:
	// compare both without it, at the same noise.
	noRelief := func(e *Encoder) { e.noRelief = true }
	ms, lr := encodeWith(t, stereo128, tones, noRelief), encodeWith(t, stereo128, tones, func(e *Encoder) { noMS(e); noRelief(e) })
	ratio := float64(frameBits(ms)) / float64(frameBits(lr))
	snrMS := snr(tones.pcm, ffmpegDecode(t, adts(t, 48000, 2, ms), 48000, 2), 2, FrameSamples, 4096)
	snrLR := snr(tones.pcm, ffmpegDecode(t, adts(t, 48000, 2, lr), 48000, 2), 2, FrameSamples, 4096)
	t.Logf("dual-mono tones: M/S %d bits (%.2f of L/R's %d), SNR %.1f dB vs %.1f", frameBits(ms), ratio, frameBits(lr), snrMS, snrLR)
	if ratio > 0.65 || snrMS < snrLR-1 {
		t.Errorf("dual-mono tones: M/S costs %.2f of L/R at SNR %.1f dB (L/R %.1f), want ≤ 0.65 at no worse", ratio, snrMS, snrLR)
	}

	ms, lr = encodeSignal(t, stereo128, mix), encodeWith(t, stereo128, mix, noMS)
	snrMS = snr(mix.pcm, ffmpegDecode(t, adts(t, 48000, 2, ms), 48000, 2), 2, FrameSamples, 4096)
	snrLR = snr(mix.pcm, ffmpegDecode(t, adts(t, 48000, 2, lr), 48000, 2), 2, FrameSamples, 4096)
	t.Logf("dual-mono music at 128k: SNR M/S %.1f dB, L/R %.1f dB", snrMS, snrLR)
	if snrMS < snrLR+4 {
		t.Errorf("dual-mono music: M/S SNR %.1f dB, want ≥ L/R's %.1f + 4", snrMS, snrLR)
	}
}

// TestMidSidePanned: uncorrelated, hard-panned channels stay (nearly) L/R
// and lose nothing; anti-phase channels (pure S) decode right.
func TestMidSidePanned(t *testing.T) {
	needFFmpeg(t)
	n := 5 * 48000
	for _, tc := range []struct {
		name string
		sig  signal
	}{
		{"glockenspiel left, drums right", panned(n)},
		{"pink noise, independent", noise(48000, 2, 5, -15, true, 8)},
	} {
		ms, lr := encodeSignal(t, stereo128, tc.sig), encodeWith(t, stereo128, tc.sig, noMS)
		snrMS := snr(tc.sig.pcm, ffmpegDecode(t, adts(t, 48000, 2, ms), 48000, 2), 2, FrameSamples, 4096)
		snrLR := snr(tc.sig.pcm, ffmpegDecode(t, adts(t, 48000, 2, lr), 48000, 2), 2, FrameSamples, 4096)
		t.Logf("%s: SNR M/S %.2f dB, L/R %.2f dB", tc.name, snrMS, snrLR)
		if snrMS < snrLR-0.3 {
			t.Errorf("%s: M/S made SNR %.2f dB, L/R %.2f", tc.name, snrMS, snrLR)
		}
	}
	anti := sine(48000, 2, 3, 1000, -10)
	for i := 1; i < len(anti.pcm); i += 2 {
		anti.pcm[i] = -anti.pcm[i]
	}
	v := snr(anti.pcm, ffmpegDecode(t, adts(t, 48000, 2, encodeSignal(t, stereo128, anti)), 48000, 2), 2, FrameSamples, 4096)
	if v < 50 {
		t.Errorf("anti-phase sine: SNR %.1f dB", v)
	}
}

// needFaad is needFFmpeg for Debian's faad, the second decoder.
func needFaad(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("faad"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("faad not installed, and CI is set (scripts/deps.sh installs it)")
		}
		t.Skip("faad not installed")
	}
}

// TestFaadDecodes: a second, independent decoder (libfaad2) reads our
// streams without errors and agrees with FFmpeg's decode sample for sample
// (faad drops the first, priming frame: it aligns 1024 samples earlier).
func TestFaadDecodes(t *testing.T) {
	needFFmpeg(t)
	needFaad(t)
	n := 4 * 48000
	anti := sine(48000, 2, 4, 1000, -10)
	for i := 1; i < len(anti.pcm); i += 2 {
		anti.pcm[i] = -anti.pcm[i]
	}
	for _, tc := range []struct {
		name string
		sig  signal
	}{
		{"music", music(48000, 4)},
		{"dual-mono", dualMono(n)},
		{"panned", panned(n)},
		{"anti-phase", anti},
		{"clicks", clicks(n)},
		{"transient", transient(n)},
	} {
		for _, rate := range []int{64000, 128000} {
			stream := adts(t, 48000, 2, encodeSignal(t, Config{SampleRate: 48000, Channels: 2, Bitrate: rate}, tc.sig))
			ff := ffmpegDecode(t, stream, 48000, 2)
			fa, errs := decodeFaad(t, stream)
			if errs != "" {
				t.Fatalf("%s at %d: faad: %s", tc.name, rate, errs)
			}
			if len(fa) != len(ff)-2*FrameSamples {
				t.Fatalf("%s at %d: faad decoded %d samples, FFmpeg %d", tc.name, rate, len(fa), len(ff))
			}
			for i, v := range fa {
				if d := int(v) - int(ff[i+2*FrameSamples]); d > 1 || d < -1 {
					t.Fatalf("%s at %d: sample %d: faad %d, FFmpeg %d", tc.name, rate, i, v, ff[i+2*FrameSamples])
				}
			}
		}
	}
}

// TestBandwidth: at 128 kbit/s stereo the decoded spectrum of pink noise
// (within 60 dB of its peak, as the quality report measures it) reaches
// 17 kHz, and at 64 kbit/s it stays narrower (the low-pass by rate).
func TestBandwidth(t *testing.T) {
	needFFmpeg(t)
	s := noise(48000, 2, 3, -15, true, 12)
	var got [2]float64
	for i, rate := range []int{64000, 128000} {
		dec := ffmpegDecode(t, adts(t, 48000, 2, encodeSignal(t, Config{SampleRate: 48000, Channels: 2, Bitrate: rate}, s)), 48000, 2)
		_, _, got[i], _ = nmrAndBandwidth(s, func(j, ch int) float64 {
			if k := 2*(j+FrameSamples) + ch; k < len(dec) {
				return float64(dec[k])
			}
			return 0
		})
		t.Logf("%d kbit/s: bandwidth %.1f kHz", rate/1000, got[i]/1000)
	}
	if got[1] < 17000 || got[0] >= got[1] {
		t.Errorf("bandwidth %.0f Hz at 64k, %.0f Hz at 128k; want ≥ 17000 at 128k and less at 64k", got[0], got[1])
	}
}
