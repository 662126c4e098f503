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
// 1024-sample delay), and only cur is new. An attack in the second half
// of cur (from sample 448 on) is seen one frame ahead of the block that
// must code it with short windows: this frame becomes LONG_START and the
// next EIGHT_SHORT, which covers cur[448:1024]. An attack in cur[0:448]
// would need this frame short and the previous one LONG_START, decided
// before cur was known; it keeps its pre-echo unless the previous frame
// was already short. Covering those too would take one more frame of
// delay, which the gateway's timing (frame n carries input n−1) rules out.

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
	attackRatio = 10
	// attackDecay is the peak follower's factor per sub-block: −12 dB in
	// 8 sub-blocks (11 ms), slower than a struck note's decay.
	attackDecay = 0.7
	// attackFloor: a differenced amplitude of 60 (≈ −55 dBFS) over a
	// sub-block; quieter onsets are not worth short windows.
	attackFloor = 60 * 60 * subBlockLen
)

// detectAttack scans cur for attacks and reports whether one lies where
// this frame's short windows would cover it (early: sub-blocks starting
// before 576) or where only the next frame's can (late: from 448 on).
func (c *channel) detectAttack(cur *[FrameSamples]float64) (early, late bool) {
	x, peak := c.hpLast, c.hpPeak
	for s := range subBlocks {
		var e float64
		for i := s * subBlockLen; i < (s+1)*subBlockLen; i++ {
			d := cur[i] - x
			x = cur[i]
			e += d * d
		}
		if e > attackFloor && e > attackRatio*peak {
			start := s * subBlockLen
			early = early || start < shortStart+shortLines
			late = late || start >= shortStart
		}
		peak = max(e, peak*attackDecay)
	}
	c.hpLast, c.hpPeak = x, peak
	return early, late
}

// nextSequence is the window sequence of this frame given the last one
// and the attacks in cur (any channel).
func nextSequence(last int, early, late bool) int {
	switch last {
	case longStart:
		return eightShort
	case eightShort:
		if early || late {
			return eightShort
		}
		return longStop
	}
	if late {
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
