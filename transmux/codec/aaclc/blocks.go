package aaclc

import "math"

// Block switching (§4.6.11): a frame whose window would reach an attack
// is coded as eight short windows of 256 samples (EIGHT_SHORT_SEQUENCE),
// so the quantization noise of the attack stays within ~3 ms of it instead
// of spreading over the 43 ms of a long window before it (pre-echo). Long
// and short windows meet through a LONG_START window before and a
// LONG_STOP window after the short frames, whose flat parts and short
// slopes keep time-domain aliasing cancellation.
//
// Look-ahead: frame n transforms the window over prev and cur (the
// 1024-sample delay); a frame's eight short windows cover block samples
// 448…1600, the last 576 of prev and the first 576 of cur, and a frame can
// only be short if the one before it is LONG_START or EIGHT_SHORT. So
// frame n must know whether frame n+1 will be short: an attack late in cur
// (from 448 on) or early in the input after cur (before 576). The encoder
// takes those first LookAheadSamples of the next frame with each frame
// (FFmpeg's aac encoder holds a whole frame more instead): every attack the
// detector finds gets short windows, for 576 samples (12 ms) of latency,
// none of timestamp.

// LookAheadSamples is how much of the next frame's input, per channel,
// Encode needs with each frame: up to the end of the next frame's first
// short window.
const LookAheadSamples = shortStart + shortLines

// Window sequences (window_sequence, Table 4.68).
const (
	onlyLong   = 0
	longStart  = 1
	eightShort = 2
	longStop   = 3
)

const (
	shortLen     = 256 // short window length
	shortLines   = shortLen / 2
	shortWindows = 8
	// shortStart is the offset of the first short window in the 2048
	// samples of a frame's block: (1024 − 128)/2 = 448.
	shortStart = (FrameSamples - shortLines) / 2
	// numShortBands is the scalefactor band count of a short window at
	// 32, 44.1 and 48 kHz.
	numShortBands = len(swbOffsetShort48) - 1
	// kbdAlphaShort is the KBD alpha of short windows (§4.6.11.3.1).
	kbdAlphaShort = 6
)

// swbOffsetShort48 holds the band edges of a short window at 32, 44.1 and
// 48 kHz (ISO/IEC 14496-3 Table 4.131; 14 bands of 128 lines).
var swbOffsetShort48 = [15]uint16{0, 4, 8, 12, 16, 20, 28, 36, 44, 56, 68, 80, 96, 112, 128}

// Attack detection on the first difference of the input (a high-pass of
// +6 dB/octave, so low notes that start softly do not count and clicks
// and consonants do) in sub-blocks of 64 samples: an attack is a
// sub-block whose energy is attackRatio times a decaying peak of the
// sub-blocks before it and above attackFloor.
const (
	subBlockLen = 64
	subBlocks   = FrameSamples / subBlockLen
	// attackRatio 6 rather than 10 since the look-ahead: the softer onsets
	// it adds (sound effects, synthetic speech) cut their pre-echo by 2–3
	// dB for ≤ 0.3 dB of segmental SNR. Measured and not kept: the raw
	// (not differenced) energy against a decaying peak (no onset more)
	// and against the mean of the last 21 ms (speech-espeak 2 dB, nothing
	// on recorded speech, whose pre-echo came from the floor, see athRelief).
	attackRatio = 6
	// weakRatio is the rise with which a channel joins the other channel's
	// attack (3 dB).
	weakRatio = 2
	// attackDecay is the peak follower's factor per sub-block: −12 dB in
	// 8 sub-blocks (11 ms), slower than a struck note's decay.
	attackDecay = 0.7
	// attackFloor: a differenced amplitude of 60 (≈ −55 dBFS) over a
	// sub-block; quieter onsets are not worth short windows.
	attackFloor = 60 * 60 * subBlockLen
	// releaseRatio, releaseFloor: a sub-block 30 dB below the decaying
	// peak of those before it, where that peak is above −45 dBFS of
	// differenced amplitude, is an abrupt end.
	releaseRatio = 1000
	releaseFloor = 200 * 200 * subBlockLen
)

// attacks says where in a frame of input attacks lie: early where the
// short windows of the frame whose window ends with that input cover them
// (sub-blocks starting before 576), late where only the following frame's
// can (from 448 on).
type attacks struct{ early, late bool }

// detectAttack scans input x (a frame, or the look-ahead's sub-blocks)
// for attacks: sub-blocks attackRatio times the decaying peak before them
// (strong), and rises of weakRatio (weak, for the window decision of a
// pair, see joinAttacks). With keep the detector's state moves on to the
// end of x; the look-ahead is scanned again as part of its own frame.
func (c *channel) detectAttack(x []float64, keep bool) (strong, weak attacks) {
	last, peak, quiet := c.hpLast, c.hpPeak, c.hpQuiet
	for s := range len(x) / subBlockLen {
		var e float64
		for _, v := range x[s*subBlockLen : (s+1)*subBlockLen] {
			d := v - last
			last = v
			e += d * d
		}
		start := s * subBlockLen
		early, late := start < shortStart+shortLines, start >= shortStart
		drop := e*releaseRatio < peak
		if drop && !quiet && peak > releaseFloor {
			// An abrupt end (a gate, a cut): a long window would spread
			// the noise of the sound over the silence after it. Only the
			// first sub-block of the drop counts, not the silence while
			// the peak decays.
			strong.early, strong.late = strong.early || early, strong.late || late
			weak.early, weak.late = weak.early || early, weak.late || late
		}
		quiet = drop
		if e > attackFloor && e > weakRatio*peak {
			weak.early, weak.late = weak.early || early, weak.late || late
			if e > attackRatio*peak {
				strong.early, strong.late = strong.early || early, strong.late || late
			}
		}
		peak = max(e, peak*attackDecay)
	}
	if keep {
		c.hpLast, c.hpPeak, c.hpQuiet = last, peak, quiet
	}
	return strong, weak
}

// nextSequence is the window sequence of this frame given the last one,
// whether this frame's short windows would cover an attack (now) and
// whether the next frame's would (next). An attack now after a long or
// stop frame cannot be honoured; with the look-ahead that happens only
// for the first frame of a stream.
func nextSequence(last int, now, next bool) int {
	switch last {
	case longStart:
		return eightShort
	case eightShort:
		// Short again for an attack in the next frame too: a LONG_STOP
		// could not lead into short windows.
		if now || next {
			return eightShort
		}
		return longStop
	}
	if next {
		return longStart
	}
	return onlyLong
}

// layout describes the bands of a frame as quantization sees them: one
// flat list whose band i covers lines off[i]..off[i+1] of the channel's
// spectrum. A long frame has one group of the long bands below the
// low-pass. A short frame has one group per run of grouped windows; a
// group's band b holds band b of each of its windows in turn (the
// bitstream's order of spectral data, §4.6.11.3.4), so a group shares one
// scalefactor and codebook per band.
type layout struct {
	off     []uint16
	nb      int // bands in all groups
	groups  int
	per     int  // bands per group
	lenBits uint // sect_len field width: 5 long, 3 short
	short   bool
	m       *masking

	// Short layouts: the lines kept per window, the per-window masking
	// constants, the group lengths and backing arrays.
	width    int
	base     *masking
	groupLen [shortWindows]int
	offs     [maxBands + 1]uint16
	mask     masking
}

// sectionEsc is the sect_len value that continues a section's length.
func (l *layout) sectionEsc() int { return 1<<l.lenBits - 1 }

func newLongLayout(swb []uint16, maxSFB, sampleRate int) layout {
	return layout{
		off: swb[:maxSFB+1], nb: maxSFB, groups: 1, per: maxSFB, lenBits: 5,
		m: newMasking(swb, maxSFB, sampleRate, FrameSamples, 0),
	}
}

// newShortLayout builds the short layout of the bands below cutoff Hz,
// eight groups of one window until setGroups says otherwise. The
// threshold of hearing is scaled to the short transform, whose lines carry
// (256/2048)² of a long window's energy.
func newShortLayout(cutoff float64, sampleRate int) *layout {
	per := 0
	for per < numShortBands && float64(swbOffsetShort48[per])*float64(sampleRate)/shortLen < cutoff {
		per++
	}
	l := &layout{per: per, lenBits: 3, short: true, width: int(swbOffsetShort48[per])}
	l.base = newMasking(swbOffsetShort48[:], per, sampleRate, shortLines, -6)
	l.setGroups([]int{1, 1, 1, 1, 1, 1, 1, 1})
	return l
}

// setGroups sets the group lengths (summing to 8) and derives the band
// edges and masking constants: a band of a group of n windows is n times
// as wide and n times the threshold energy; masking does not spread
// across groups.
func (l *layout) setGroups(lens []int) {
	l.groups = len(lens)
	l.nb = l.groups * l.per
	copy(l.groupLen[:], lens)
	pos := 0
	for g, n := range lens {
		logN := math.Log2(float64(n))
		for b := range l.per {
			i := g*l.per + b
			l.offs[i] = uint16(pos)
			pos += n * int(swbOffsetShort48[b+1]-swbOffsetShort48[b])
			l.mask.logATH[i] = l.base.logATH[b] + logN
			l.mask.logWidth[i] = l.base.logWidth[b] + logN
			l.mask.up[i], l.mask.down[i] = 0, 0
			if b > 0 {
				l.mask.up[i] = l.base.up[b]
			}
			if b < l.per-1 {
				l.mask.down[i] = l.base.down[b]
			}
		}
	}
	l.offs[l.nb] = uint16(pos)
	l.off = l.offs[:l.nb+1]
	l.m = &l.mask
}

// groupingBits is scale_factor_grouping: bit 6−(w−1) set when window w
// continues the group of window w−1.
func (l *layout) groupingBits() uint32 {
	var v uint32
	w := 0
	for g := range l.groups {
		for k := range l.groupLen[g] {
			if w > 0 {
				v <<= 1
				if k > 0 {
					v |= 1
				}
			}
			w++
		}
	}
	return v
}

// groupRise: a short window starts a new group when its energy exceeds
// this many times the loudest of the current group's. Quieter windows
// after an attack join it (their extra noise is masked by the attack),
// louder ones must not share a scalefactor with the quiet ones before
// them, which would bring the pre-echo back.
const groupRise = 2

// groupWindows chooses the group lengths from the short windows' energies
// and returns how many groups it wrote into lens.
func groupWindows(energy *[shortWindows]float64, lens *[shortWindows]int) int {
	n := 0
	peak := 0.0
	for w, e := range energy {
		if w == 0 || e > groupRise*peak {
			lens[n] = 0
			n++
			peak = 0
		}
		lens[n-1]++
		peak = max(peak, e)
	}
	return n
}

// regroup reorders a short spectrum from window order (window w's kept
// lines at w·width) into group order (per group, per band, per window),
// using tmp as scratch.
func (l *layout) regroup(spec, tmp *[FrameSamples]float64) {
	i, w0 := 0, 0
	for g := range l.groups {
		n := l.groupLen[g]
		for b := range l.per {
			lo, hi := int(swbOffsetShort48[b]), int(swbOffsetShort48[b+1])
			for w := w0; w < w0+n; w++ {
				i += copy(tmp[i:], spec[w*l.width+lo:w*l.width+hi])
			}
		}
		w0 += n
	}
	copy(spec[:i], tmp[:i])
}

// shortDCT[k][n] is 2·cos(π/128·(n+½)(k+½)), the DCT-IV of a short window
// with the MDCT's factor 2.
var shortDCT = func() *[shortLines][shortLines]float64 {
	var t [shortLines][shortLines]float64
	for k := range t {
		for n := range t[k] {
			t[k][n] = 2 * math.Cos(math.Pi/shortLines*(float64(n)+0.5)*(float64(k)+0.5))
		}
	}
	return &t
}()

// transformShort writes the eight short MDCTs of the block prev‖cur into
// out, window w's lines 0…width−1 at out[w·width:] (lines at and above
// width, beyond the low-pass, are dropped).
func (m *mdct) transformShort(prev, cur *[FrameSamples]float64, out *[FrameSamples]float64, width int) {
	at := func(i int) float64 {
		if i < FrameSamples {
			return prev[i]
		}
		return cur[i-FrameSamples]
	}
	const q = shortLen / 4
	var z [shortLen]float64
	var u [shortLines]float64
	for w := range shortWindows {
		start := shortStart + w*shortLines
		for i := range z {
			z[i] = m.short[i] * at(start+i)
		}
		for n := range q {
			u[n] = -z[3*q-1-n] - z[3*q+n]
			u[q+n] = z[n] - z[2*q-1-n]
		}
		dst := out[w*width : (w+1)*width]
		for k := range dst {
			row := &shortDCT[k]
			var acc float64
			for n, v := range u {
				acc += row[n] * v
			}
			dst[k] = acc
		}
	}
}
