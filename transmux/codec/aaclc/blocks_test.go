package aaclc

import (
	"math"
	"testing"
)

// TestSequenceTransitions: whatever the attacks, a LONG_START is followed
// by EIGHT_SHORT, EIGHT_SHORT only by itself or LONG_STOP, and a long or
// stop window never by a short one (the windows' halves must match).
func TestSequenceTransitions(t *testing.T) {
	legal := map[[2]int]bool{
		{onlyLong, onlyLong}: true, {onlyLong, longStart}: true,
		{longStop, onlyLong}: true, {longStop, longStart}: true,
		{longStart, eightShort}:  true,
		{eightShort, eightShort}: true, {eightShort, longStop}: true,
	}
	for _, last := range []int{onlyLong, longStart, eightShort, longStop} {
		for _, early := range []bool{false, true} {
			for _, late := range []bool{false, true} {
				next := nextSequence(last, early, late)
				if !legal[[2]int{last, next}] {
					t.Errorf("%d → %d (early %v, late %v)", last, next, early, late)
				}
				if late && next != longStart && next != eightShort {
					t.Errorf("late attack after %d: %d, want a switch to short", last, next)
				}
			}
		}
	}
}

// preEcho is the energy of the decode error in the 5–20 ms before sample
// at relative to the input's energy in the 20 ms from it, in dB.
func preEcho(orig, dec []int16, at int) float64 {
	var e, s float64
	for i := at - 960; i < at-240; i++ {
		for ch := range 2 {
			d := float64(dec[2*(i+FrameSamples)+ch]) - float64(orig[2*i+ch])
			e += d * d
		}
	}
	for i := at; i < at+960; i++ {
		for ch := range 2 {
			s += float64(orig[2*i+ch]) * float64(orig[2*i+ch])
		}
	}
	return 10 * math.Log10(max(e, 1e-3)/s)
}

// TestShortBlocksCutPreEcho: a click and a noise burst late in a frame
// (which the look-ahead covers) switch to short windows, and the noise in
// the 5–20 ms before them drops by far more than 20 dB against long
// windows only; both decoders read the streams (TestFaadDecodes covers
// clicks and transients through faad) and the delay stays 1024.
func TestShortBlocksCutPreEcho(t *testing.T) {
	needFFmpeg(t)
	const at = 20*FrameSamples + 700
	click := signal{48000, 2, make([]int16, 2*48000)}
	click.pcm[2*at], click.pcm[2*at+1] = 20000, 20000
	// transient's first burst starts at 48317, 189 samples into a frame:
	// shifted to 700 into frame 20 like the click.
	tr := transient(2 * 48000)
	burst := signal{48000, 2, make([]int16, 2*48000)}
	copy(burst.pcm[2*at:], tr.pcm[2*(48000+317):])
	for _, tc := range []struct {
		name string
		sig  signal
		at   int
	}{{"click", click, at}, {"burst", burst, at}} {
		short := ffmpegDecode(t, adts(t, 48000, 2, encodeSignal(t, stereo128, tc.sig)), 48000, 2)
		long := ffmpegDecode(t, adts(t, 48000, 2, encodeWith(t, stereo128, tc.sig, func(e *Encoder) { e.noShort = true })), 48000, 2)
		ps, pl := preEcho(tc.sig.pcm, short, tc.at), preEcho(tc.sig.pcm, long, tc.at)
		t.Logf("%s: pre-echo %.1f dB with short blocks, %.1f dB long only", tc.name, ps, pl)
		if ps > pl-20 {
			t.Errorf("%s: pre-echo %.1f dB, long only %.1f dB: want 20 dB less", tc.name, ps, pl)
		}
		if d, _ := bestDelay(tc.sig.pcm, short, 2, FrameSamples-8, FrameSamples+8, 0); d != FrameSamples {
			t.Errorf("%s: delay %d", tc.name, d)
		}
	}
}
