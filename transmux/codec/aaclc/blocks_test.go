package aaclc

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestSequenceTransitions: whatever the attacks, a LONG_START is followed
// by EIGHT_SHORT, EIGHT_SHORT only by itself or LONG_STOP, and a long or
// stop window never by a short one (the windows' halves must match); an
// attack the next frame's short windows must cover makes this frame lead
// into them, and one this frame's cover makes it short whenever the last
// frame allows it.
func TestSequenceTransitions(t *testing.T) {
	legal := map[[2]int]bool{
		{onlyLong, onlyLong}: true, {onlyLong, longStart}: true,
		{longStop, onlyLong}: true, {longStop, longStart}: true,
		{longStart, eightShort}:  true,
		{eightShort, eightShort}: true, {eightShort, longStop}: true,
	}
	for _, last := range []int{onlyLong, longStart, eightShort, longStop} {
		for _, now := range []bool{false, true} {
			for _, next := range []bool{false, true} {
				seq := nextSequence(last, now, next)
				if !legal[[2]int{last, seq}] {
					t.Errorf("%d → %d (now %v, next %v)", last, seq, now, next)
				}
				if next && seq != longStart && seq != eightShort {
					t.Errorf("attack next after %d: %d, want a switch to short", last, seq)
				}
				if now && (last == longStart || last == eightShort) && seq != eightShort {
					t.Errorf("attack now after %d: %d, want short", last, seq)
				}
				if !now && !next && last != longStart && seq == eightShort {
					t.Errorf("no attack after %d: short", last)
				}
			}
		}
	}
}

// TestLookAheadReachesEarlyAttacks: a click at every position in a frame,
// after long frames of silence-free quiet noise, lands in short windows:
// the frame before it is LONG_START whether the click is early or late in
// its frame (which without the look-ahead got long windows and TNS).
func TestLookAheadReachesEarlyAttacks(t *testing.T) {
	for _, pos := range []int{0, 100, 300, 447, 448, 575, 576, 700, 1023} {
		at := 20*FrameSamples + pos
		s := noise(48000, 2, 1, -50, true, 3)
		s.pcm[2*at], s.pcm[2*at+1] = 20000, 20000
		e, err := NewEncoder(stereo128)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int
		for f := 0; f+2*FrameSamples <= len(s.pcm); f += 2 * FrameSamples {
			if _, err := e.Encode(nil, s.pcm[f:f+2*FrameSamples], aheadOf(s.pcm, f+2*FrameSamples, 2)); err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, e.chans[0].seq) // seqs[k]: frame k, over input k−1 and k
		}
		// The click (input frame 20, block sample 1024+pos of frame 20 and
		// pos of frame 21) must fall in a short window: frame 20's cover
		// block samples 448…1600, frame 21's the same of its block.
		covered := (pos < shortStart+shortLines && seqs[20] == eightShort) ||
			(pos >= shortStart && seqs[21] == eightShort)
		if !covered {
			t.Errorf("click at %d into frame 20: frames 19–22 are %v, not short where it is", pos, seqs[19:23])
		}
		shorts := 0
		for _, q := range seqs {
			if q == eightShort {
				shorts++
			}
		}
		if shorts > 3 {
			t.Errorf("click at %d: %d short frames for one click: %v", pos, shorts, seqs[15:30])
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

// TestShortBlocksCutPreEcho: a click late in a frame, one early in a frame
// (which only the look-ahead lets short windows reach) and a noise burst
// switch to short windows, and the noise in
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
	const early = 30*FrameSamples + 100
	clickEarly := signal{48000, 2, make([]int16, 2*48000)}
	clickEarly.pcm[2*early], clickEarly.pcm[2*early+1] = 20000, 20000
	for _, tc := range []struct {
		name string
		sig  signal
		at   int
	}{{"click", click, at}, {"click early", clickEarly, early}, {"burst", burst, at}} {
		short := ffmpegDecode(t, adts(t, 48000, 2, encodeSignal(t, stereo128, tc.sig)), 48000, 2)
		long := ffmpegDecode(t, adts(t, 48000, 2, encodeWith(t, stereo128, tc.sig, func(e *Encoder) { e.noShort, e.noTNS = true, true })), 48000, 2)
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

// TestTNSCutsPreEcho: with long windows only (short ones, which the
// look-ahead now gives every detected attack, switched off), an attack
// early in a frame is filtered with TNS, and its pre-echo drops against no
// TNS (by about 3 dB at 64k over quiet noise); the SNR holds (the
// decoder's filter inverts ours) and faad decodes the same samples as
// FFmpeg.
func TestTNSCutsPreEcho(t *testing.T) {
	needFFmpeg(t)
	needFaad(t)
	// At 64 kbit/s, where the pre-echo of a long window is loud.
	tnsCfg := Config{SampleRate: 48000, Channels: 2, Bitrate: 64000}
	for _, pos := range []int{100, 300} {
		at := 20*FrameSamples + pos
		// Over quiet noise, so that the frames before it use their bits and
		// the attack cannot borrow its way out of the pre-echo.
		s := noise(48000, 2, 1, -45, true, 5)
		for i := range 9600 {
			tt := float64(i) / 48000
			v := 15000 * min(tt/0.0003, 1) * math.Exp(-tt/0.05) *
				(math.Sin(2*math.Pi*3000*tt) + 0.5*math.Sin(2*math.Pi*7100*tt) + 0.3*math.Sin(2*math.Pi*1100*tt))
			s.pcm[2*(at+i)] += int16(v)
			s.pcm[2*(at+i)+1] += int16(v)
		}
		used := false
		longOnly := func(e *Encoder) { e.noShort = true }
		frames := encodeWith(t, tnsCfg, s, longOnly)
		e, err := NewEncoder(tnsCfg)
		if err != nil {
			t.Fatal(err)
		}
		longOnly(e)
		for f := 0; f+2*FrameSamples <= len(s.pcm); f += 2 * FrameSamples {
			if _, err := e.Encode(nil, s.pcm[f:f+2*FrameSamples], aheadOf(s.pcm, f+2*FrameSamples, 2)); err != nil {
				t.Fatal(err)
			}
			used = used || e.chans[0].tnsF.on
		}
		stream := adts(t, 48000, 2, frames)
		on := ffmpegDecode(t, stream, 48000, 2)
		off := ffmpegDecode(t, adts(t, 48000, 2, encodeWith(t, tnsCfg, s, func(e *Encoder) { e.noShort, e.noTNS = true, true })), 48000, 2)
		pOn, pOff := preEcho(s.pcm, on, at), preEcho(s.pcm, off, at)
		v := snr(s.pcm, on, 2, FrameSamples, 0)
		t.Logf("attack at %d into a frame: pre-echo %.1f dB with TNS, %.1f without; SNR %.1f dB", pos, pOn, pOff, v)
		if !used || pOn > pOff-2 || v < 15 {
			t.Errorf("attack at %d: TNS used %v, pre-echo %.1f dB (without %.1f), SNR %.1f dB", pos, used, pOn, pOff, v)
		}
		fa, errs := decodeFaad(t, stream)
		if errs != "" {
			t.Fatalf("faad: %s", errs)
		}
		for i, x := range fa {
			if d := int(x) - int(on[i+2*FrameSamples]); d > 1 || d < -1 {
				t.Fatalf("sample %d: faad %d, FFmpeg %d", i, x, on[i+2*FrameSamples])
			}
		}
	}
}

// TestShortBlocksOtherFormats: short frames, TNS and their transitions at
// 44.1 and 32 kHz, mono and stereo, decode without errors in FFmpeg and
// faad, identically to 1 LSB, with the delay exact.
func TestShortBlocksOtherFormats(t *testing.T) {
	needFFmpeg(t)
	needFaad(t)
	for _, cfg := range []Config{
		{SampleRate: 44100, Channels: 2, Bitrate: 128000},
		{SampleRate: 32000, Channels: 2, Bitrate: 96000},
		{SampleRate: 48000, Channels: 1, Bitrate: 64000},
		{SampleRate: 44100, Channels: 1, Bitrate: 96000},
	} {
		// Bursts of a decaying three-tone at every position in a frame
		// (steps of 211 samples), so that all sequences occur.
		n := 3 * cfg.SampleRate
		s := signal{cfg.SampleRate, cfg.Channels, make([]int16, n*cfg.Channels)}
		shorts, starts := 0, 0
		for k, at := 0, 2000; at+4000 < n; k, at = k+1, at+cfg.SampleRate/8+211*(k%5) {
			for i := range 4000 {
				tt := float64(i) / float64(cfg.SampleRate)
				v := int16(12000 * min(tt/0.0003, 1) * math.Exp(-tt/0.02) *
					(math.Sin(2*math.Pi*2500*tt) + 0.5*math.Sin(2*math.Pi*6100*tt)))
				for ch := range cfg.Channels {
					s.pcm[(at+i)*cfg.Channels+ch] = v
				}
			}
		}
		e, err := NewEncoder(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var frames [][]byte
		step := FrameSamples * cfg.Channels
		for f := 0; f+step <= len(s.pcm); f += step {
			out, err := e.Encode(nil, s.pcm[f:f+step], aheadOf(s.pcm, f+step, cfg.Channels))
			if err != nil {
				t.Fatal(err)
			}
			frames = append(frames, out)
			switch e.chans[0].seq {
			case eightShort:
				shorts++
			case longStart:
				starts++
			}
		}
		stream := adts(t, cfg.SampleRate, cfg.Channels, frames)
		ff := ffmpegDecode(t, stream, cfg.SampleRate, cfg.Channels)
		fa, errs := decodeFaadAs(t, stream, cfg.Channels)
		if errs != "" {
			t.Fatalf("%+v: faad: %s", cfg, errs)
		}
		for i, x := range fa {
			if d := int(x) - int(ff[i+step]); d > 1 || d < -1 {
				t.Fatalf("%+v: sample %d: faad %d, FFmpeg %d", cfg, i, x, ff[i+step])
			}
		}
		d, v := bestDelay(s.pcm, ff, cfg.Channels, FrameSamples-8, FrameSamples+8, 0)
		t.Logf("%+v: %d short frames, %d starts; SNR %.1f dB at delay %d", cfg, shorts, starts, v, d)
		if shorts == 0 || d != FrameSamples || v < 15 {
			t.Errorf("%+v: %d short frames, SNR %.1f dB at delay %d", cfg, shorts, v, d)
		}
	}
}

// TestIndependentWindows: a pair whose channels do not share an attack
// (glockenspiel left, drums right) codes them with separate windows where
// the drums need short ones and the ringing bars do not, and the stream
// decodes (TestFaadDecodes holds faad to FFmpeg on it); dual-mono keeps a
// common window in every frame, so M/S stays available.
func TestIndependentWindows(t *testing.T) {
	needFFmpeg(t)
	n := 4 * 48000
	for _, tc := range []struct {
		name     string
		sig      signal
		separate bool
	}{{"panned", panned(n), true}, {"dual-mono", dualMono(n), false}} {
		e, err := NewEncoder(stereo128)
		if err != nil {
			t.Fatal(err)
		}
		separate, shorts := 0, [2]int{}
		for f := 0; f+2*FrameSamples <= len(tc.sig.pcm); f += 2 * FrameSamples {
			if _, err := e.Encode(nil, tc.sig.pcm[f:f+2*FrameSamples], aheadOf(tc.sig.pcm, f+2*FrameSamples, 2)); err != nil {
				t.Fatal(err)
			}
			if !e.common {
				separate++
			}
			for ch := range 2 {
				if e.chans[ch].seq == eightShort {
					shorts[ch]++
				}
			}
		}
		t.Logf("%s: %d frames with separate windows; short frames left %d, right %d", tc.name, separate, shorts[0], shorts[1])
		if tc.separate && (separate == 0 || shorts[0] >= shorts[1]) {
			t.Errorf("%s: %d frames with separate windows, short frames left %d, right %d: want separate windows, fewer short ones for the bars", tc.name, separate, shorts[0], shorts[1])
		}
		if !tc.separate && (separate != 0 || shorts[0] == 0) {
			t.Errorf("%s: %d frames with separate windows, %d short frames: want a common window always", tc.name, separate, shorts[0])
		}
		dec := ffmpegDecode(t, adts(t, 48000, 2, encodeSignal(t, stereo128, tc.sig)), 48000, 2)
		if v := snr(tc.sig.pcm, dec, 2, FrameSamples, 4096); v < 12 {
			t.Errorf("%s: SNR %.1f dB", tc.name, v)
		}
	}
}

// TestReleaseDetection: a noise burst cut off abruptly is an attack for
// the window decision (its end must get short windows, or a long window
// spreads its noise over the silence after it); the same burst decaying
// smoothly to silence, and a steady tone, are not.
func TestReleaseDetection(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	burst := func(cut bool) []float64 {
		x := make([]float64, 3*FrameSamples)
		for i := range FrameSamples + 700 {
			env := math.Exp(-float64(i) / 2000)
			if !cut {
				env *= math.Max(0, 1-float64(i)/float64(FrameSamples+700))
			}
			x[i] = 3000 * env * rng.NormFloat64()
		}
		return x
	}
	tone := make([]float64, 3*FrameSamples)
	for i := range tone {
		tone[i] = 8000 * math.Sin(2*math.Pi*440*float64(i)/48000)
	}
	for _, tc := range []struct {
		name string
		x    []float64
		want [3]attacks // per frame after the first (whose onset counts)
	}{
		{"cut", burst(true), [3]attacks{{}, {late: true}, {}}},
		{"fade", burst(false), [3]attacks{}},
		{"tone", tone, [3]attacks{}},
	} {
		var c channel
		for f := range 3 {
			got, _ := c.detectAttack(tc.x[f*FrameSamples:(f+1)*FrameSamples], true)
			if f > 0 && got != tc.want[f] {
				t.Errorf("%s: frame %d: attacks %+v, want %+v", tc.name, f, got, tc.want[f])
			}
		}
	}
}
