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
// low-pass; a short frame has eight groups (one per window, no grouping)
// of the short bands below it, each window's lines packed in band order,
// which is also the order of the bitstream's spectral data.
type layout struct {
	off     []uint16
	nb      int // bands in all groups
	groups  int
	per     int  // bands per group
	lenBits uint // sect_len field width: 5 long, 3 short
	short   bool
	m       *masking
}

// sectionEsc is the sect_len value that continues a section's length.
func (l *layout) sectionEsc() int { return 1<<l.lenBits - 1 }

func newLongLayout(swb []uint16, maxSFB, sampleRate int) layout {
	return layout{
		off: swb[:maxSFB+1], nb: maxSFB, groups: 1, per: maxSFB, lenBits: 5,
		m: newMasking(swb, maxSFB, sampleRate, FrameSamples, 0),
	}
}

// newShortLayout builds the eight-window layout of the short bands below
// cutoff Hz. The masking constants repeat per window, with no spreading
// across windows and the threshold of hearing scaled to the short
// transform: its lines carry (256/2048)² of a long window's energy.
func newShortLayout(cutoff float64, sampleRate int) layout {
	per := 0
	for per < numShortBands && float64(swbOffsetShort48[per])*float64(sampleRate)/shortLen < cutoff {
		per++
	}
	width := int(swbOffsetShort48[per])
	l := layout{groups: shortWindows, per: per, nb: shortWindows * per, lenBits: 3, short: true}
	l.off = make([]uint16, l.nb+1)
	for w := range shortWindows {
		for b := range per {
			l.off[w*per+b] = uint16(w*width) + swbOffsetShort48[b]
		}
	}
	l.off[l.nb] = uint16(shortWindows * width)
	base := newMasking(swbOffsetShort48[:], per, sampleRate, shortLines, -6)
	l.m = &masking{}
	for w := range shortWindows {
		for b := range per {
			i := w*per + b
			l.m.logATH[i], l.m.logWidth[i] = base.logATH[b], base.logWidth[b]
			if b > 0 {
				l.m.up[i] = base.up[b]
			}
			if b < per-1 {
				l.m.down[i] = base.down[b]
			}
		}
	}
	return l
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
