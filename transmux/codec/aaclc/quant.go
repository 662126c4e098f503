package aaclc

import "math"

const (
	maxBands = max(len(swbOffsetLong32)-1, shortWindows*numShortBands)

	// sfOffset is the scalefactor of unit step size: a line decodes to
	// sign(q)·|q|^(4/3)·2^((sf−sfOffset)/4) (§4.6.2.3.3).
	sfOffset = 100
	maxSF    = 255
	// maxSFDiff bounds the difference between consecutive coded
	// scalefactors, the range of the scalefactor codebook.
	maxSFDiff = 60
	// roundOffset biases the rounding of |x|^(3/4) towards zero: it
	// minimises the mean squared error of the |q|^(4/3) reconstruction
	// for Laplacian-like spectra (the value of the standard's informative
	// encoder).
	roundOffset = 0.4054

	// A section costs sect_cb (4 bits) plus sect_len fields of 5 bits
	// (long windows) or 3 (short), one more per 31 (7) bands; see layout.
	infBits = 1 << 30
	// silentSFBits is the cost of the scalefactor of a silent band coded
	// with a non-zero codebook: it repeats the previous one (difference 0).
	silentSFBits = 1
)

// pow34SF[sf] is 2^(−3(sf−100)/16): multiplying |x|^(3/4) by it gives the
// unrounded quantized magnitude at scalefactor sf.
var pow34SF = func() [maxSF + 1]float64 {
	var t [maxSF + 1]float64
	for sf := range t {
		t[sf] = math.Exp2(-3 * float64(sf-sfOffset) / 16)
	}
	return t
}()

// channel is the per-channel state: the previous input frame (MDCT
// overlap), the spectrum of the current frame, its per-band analysis and
// the quantization being tried.
type channel struct {
	// The input: the frame being coded transforms the window over prev
	// and cur (pointing into blocks, swapped each frame so that no frame
	// of PCM is copied); ahead is the start of the next frame, which
	// decides whether this one must lead into short windows.
	prev, cur         *[FrameSamples]float64
	blocks            [2][FrameSamples]float64
	ahead             [LookAheadSamples]float64
	prevZero, curZero bool // prev, cur are all zero
	// latePrev: an attack late in prev (the short windows of the frame
	// over prev and cur cover it); attackNow: this frame's short windows
	// would cover one.
	latePrev, attackNow bool

	seq      int     // this frame's window sequence
	lay      *layout // this frame's bands: the encoder's long layout or short
	short    *layout // bands of eight-short frames, regrouped per frame
	codedSFB int     // max_sfb of the frame being written
	// Attack detector state: the last input sample and the decaying peak
	// of the differenced energy per sub-block.
	// hpQuiet: the last sub-block lay releaseRatio below the peak.
	hpLast, hpPeak float64
	hpQuiet        bool
	tnsF           tnsFilter // this frame's TNS filter
	spec           [FrameSamples]float64
	xp             [FrameSamples]float64 // |spec|^(3/4)
	q              [FrameSamples]int32   // quantized lines, signed

	// Analysis, fixed for the frame.
	silent  [maxBands]bool    // all lines exactly zero
	maxXp   [maxBands]float64 // largest |x|^(3/4) in the band
	sfNoise [maxBands]int     // scalefactor whose noise is the band energy (offset 0)
	sfFloor [maxBands]int     // no finer than the hearing threshold or q ≤ 8191 allow
	sumSqrt [maxBands]float64 // Σ√|x|
	energy  [maxBands]float64 // Σx²
	density [maxBands]float64 // energy per line, then its masking spread
	// logNoise is log2 of the noise energy the band may take at offset 0
	// (set for bands that are not silent).
	logNoise [maxBands]float64
	// athMS is log2 of the share of the threshold of hearing an M/S band
	// may take as noise (≤ 0), set by msDecide.
	athMS [maxBands]float64

	// Quantization at the offset under test.
	sf       [maxBands]int
	qmax     [maxBands]int32
	mustCode [maxBands]bool   // kept coded to hold the scalefactor chain
	cb       [maxBands]uint8  // codebook per band
	cost     [maxBands]int    // spectral bits of the band in cb
	pairCost [maxBands][2]int // spectral bits in the band's own pair, set by estimateBits
}

// analyze computes the spectrum's per-band statistics and the scalefactors
// that the noise model asks for before the global offset.
//
// Noise model: quantizing |x|^(3/4) with unit step and mapping back makes an
// error of variance ≈ (4/27)·s^(3/2)·Σ√|x| over a band of step s. The noise
// a band may take is its width times a density that follows the masking
// level: the band's energy density spread to its neighbours (see
// masking), raised to the power noiseTilt (< 1, so quiet bands get
// relatively less noise than loud ones, a rough stand-in for a
// psychoacoustic model that also keeps the total SNR up), times 2^(3d/8)
// for the frame's global offset d found by rate control. The floor keeps
// noise from going below the absolute threshold of hearing, where bits buy
// nothing.
func (c *channel) analyze(l *layout) {
	swb, nb, m := l.off, l.nb, l.m
	for b := range nb {
		c.analyzeBand(swb, b)
		c.density[b] = c.energy[b] / float64(swb[b+1]-swb[b])
	}
	m.spread(c.density[:nb])
	for b := range nb {
		if c.silent[b] {
			continue
		}
		// In log2: noise = width · density^noiseTilt.
		c.logNoise[b] = m.logWidth[b] + noiseTilt*log2Fast(c.density[b])
		if c.tnsF.on && int(swb[b]) >= c.tnsF.lo && int(swb[b]) < c.tnsF.hi {
			// The residual's density is the signal's over the gain G;
			// the noise may be the signal's allowance over G.
			c.logNoise[b] -= (1 - noiseTilt) * c.tnsF.logGain
		}
		c.setScalefactorLimits(b, c.logNoise[b], m.logATH[b])
	}
}

// analyzeBand computes |x|^(3/4) and the statistics of band b's lines.
func (c *channel) analyzeBand(swb []uint16, b int) {
	lo, hi := int(swb[b]), int(swb[b+1])
	var energy, sumSqrt, peak float64
	for i := lo; i < hi; i++ {
		x := math.Abs(c.spec[i])
		s := math.Sqrt(x)
		p := math.Sqrt(x * s)
		c.xp[i] = p
		energy += x * x
		sumSqrt += s
		if p > peak {
			peak = p
		}
	}
	c.maxXp[b] = peak
	c.silent[b] = peak == 0
	c.sumSqrt[b] = sumSqrt
	c.energy[b] = energy
}

// setScalefactorLimits sets the scalefactor of band b whose noise is
// 2^logNoise (at offset 0) and its floor from the threshold of hearing
// (2^logATH) and the quantizer's range.
func (c *channel) setScalefactorLimits(b int, logNoise, logATH float64) {
	logSqrt := log2Fast(c.sumSqrt[b])
	c.sfNoise[b] = sfForNoise(logNoise, logSqrt)
	c.sfFloor[b] = max(sfForNoise(logATH, logSqrt), sfForPeak(c.maxXp[b]), 0)
}

// athRelief is how far (in log2 of energy: 4 is 12 dB) a frame that
// leaves half its budget unused lowers the threshold-of-hearing floor.
const athRelief = 4

// lowerFloor recomputes the bands' floors with the threshold of hearing
// lowered by relief (log2 of energy), and an M/S band's by its share as
// msDecide set it.
func (c *channel) lowerFloor(relief float64, ms *[maxBands]bool) {
	l := c.lay
	for b := range l.nb {
		if c.silent[b] {
			continue
		}
		ath := l.m.logATH[b] - relief
		if ms[b] {
			ath += c.athMS[b]
		}
		c.sfFloor[b] = max(sfForNoise(ath, log2Fast(c.sumSqrt[b])), sfForPeak(c.maxXp[b]), 0)
	}
}

// noiseTilt is the exponent of the masking density in the allowed noise.
const noiseTilt = 0.6

// masking holds the per-band constants of the noise model.
type masking struct {
	logATH   [maxBands]float64 // log2 of the energy at the threshold of hearing
	logWidth [maxBands]float64 // log2 of the band width in lines
	up, down [maxBands]float64 // spreading factor from band b−1 up to b, from b+1 down to b
}

// newMasking computes the constants for bands swb[:nb+1] of a transform
// of lines lines (1024 long, 128 short); athShift is added to log2 of the
// threshold of hearing (the short transform's energy scale).
func newMasking(swb []uint16, nb, sampleRate, lines int, athShift float64) *masking {
	m := &masking{}
	hz := func(line uint16) float64 { return float64(line) * float64(sampleRate) / float64(2*lines) }
	for b := range nb {
		m.logATH[b] = math.Log2(athEnergy(hz(swb[b]), hz(swb[b+1]))) + athShift
		m.logWidth[b] = math.Log2(float64(swb[b+1] - swb[b]))
		if b > 0 {
			dz := bark(hz(swb[b+1])+hz(swb[b])) - bark(hz(swb[b])+hz(swb[b-1]))
			m.up[b] = math.Pow(10, -spreadUpDB*dz/10)
			m.down[b-1] = math.Pow(10, -spreadDownDB*dz/10)
		}
	}
	return m
}

// Masking slopes in dB per Bark: a sound masks higher frequencies more
// than lower ones.
const (
	spreadUpDB   = 15
	spreadDownDB = 27
)

// bark is Zwicker's critical-band rate for twice the frequency f2 (the
// callers pass sums of band edges, whose half is the band centre).
func bark(f2 float64) float64 {
	f := f2 / 2
	return 13*math.Atan(0.00076*f) + 3.5*math.Atan(f/7500*f/7500)
}

// spread replaces each band's energy density by the largest of it and its
// neighbours' spread densities, in place.
func (m *masking) spread(d []float64) {
	for b := 1; b < len(d); b++ {
		d[b] = max(d[b], d[b-1]*m.up[b])
	}
	for b := len(d) - 2; b >= 0; b-- {
		d[b] = max(d[b], d[b+1]*m.down[b])
	}
}

// markSilent sets the analysis of an all-zero spectrum.
func (c *channel) markSilent(nb int) {
	for b := range nb {
		c.silent[b] = true
	}
}

// sfForNoise is the scalefactor whose quantization noise over a band is
// the given energy: 100 + (8/3)·log2(27·noise/(4·Σ√|x|)), from log2 of
// noise and of Σ√|x|.
func sfForNoise(logNoise, logSumSqrt float64) int {
	v := sfOffset + 8.0/3*(log2of27over4+logNoise-logSumSqrt)
	return int(math.Floor(max(min(v, maxSF), -1)))
}

// log2of27over4 is log2(27/4).
var log2of27over4 = math.Log2(27.0 / 4)

// sfForPeak is the smallest scalefactor that keeps the band's largest
// quantized magnitude within 8191.
func sfForPeak(peak float64) int {
	const limit = maxQuant + 1 - roundOffset
	sf := sfOffset + int(math.Ceil(16.0/3*(log2Fast(peak)-log2Limit)))
	sf = min(max(sf-1, 0), maxSF)
	for sf < maxSF && peak*pow34SF[sf] >= limit {
		sf++
	}
	return sf
}

var log2Limit = math.Log2(maxQuant + 1 - roundOffset)

// log2Fast is log2(x) for x > 0 to within 2e-5: the exponent from the
// float's bits and log2 of the mantissa m ∈ [1, 2) by the series
// 2/ln2·atanh((m−1)/(m+1)), four terms. The scalefactors it feeds are
// integers, so this is ample; math.Log2 per band cost several µs a frame.
func log2Fast(x float64) float64 {
	bits := math.Float64bits(x)
	exp := float64(int(bits>>52&0x7ff) - 1023)
	m := math.Float64frombits(bits&(1<<52-1) | 1023<<52)
	t := (m - 1) / (m + 1)
	t2 := t * t
	return exp + t*(2/math.Ln2)*(1+t2*(1.0/3+t2*(1.0/5+t2*(1.0/7))))
}

// quantize quantizes all bands at global offset d and fixes the
// scalefactors up so that consecutive coded ones differ by at most 60.
func (c *channel) quantize(swb []uint16, nb, d int) {
	for b := range nb {
		c.mustCode[b] = false
		if c.silent[b] {
			c.qmax[b] = 0
			continue
		}
		c.sf[b] = min(max(c.sfNoise[b]+d, c.sfFloor[b]), maxSF)
		c.quantizeBand(swb, b)
	}
	// Raising a scalefactor towards its neighbours only coarsens that
	// band, and one forward plus one backward pass leave every coded
	// neighbour pair within range (a raise never breaks an earlier pair).
	// A band that a raise empties stays coded, so the chain it belongs to
	// does not change.
	last := -1
	for b := range nb {
		if c.qmax[b] == 0 && !c.mustCode[b] {
			continue
		}
		if last >= 0 && c.sf[b] < c.sf[last]-maxSFDiff {
			c.sf[b] = c.sf[last] - maxSFDiff
			c.requantize(swb, b)
		}
		last = b
	}
	last = -1
	for b := nb - 1; b >= 0; b-- {
		if c.qmax[b] == 0 && !c.mustCode[b] {
			continue
		}
		if last >= 0 && c.sf[b] < c.sf[last]-maxSFDiff {
			c.sf[b] = c.sf[last] - maxSFDiff
			c.requantize(swb, b)
		}
		last = b
	}
}

func (c *channel) requantize(swb []uint16, b int) {
	c.quantizeBand(swb, b)
	if c.qmax[b] == 0 {
		// Still coded, so its lines must read as zeros.
		c.mustCode[b] = true
		clear(c.q[swb[b]:swb[b+1]])
	}
}

// quantizeBand quantizes band b at c.sf[b] into c.q and sets c.qmax[b].
func (c *channel) quantizeBand(swb []uint16, b int) {
	scale := pow34SF[c.sf[b]]
	qmax := int32(c.maxXp[b]*scale + roundOffset)
	c.qmax[b] = min(qmax, maxQuant)
	if qmax == 0 {
		return
	}
	lo, hi := int(swb[b]), int(swb[b+1])
	xp, spec, q := c.xp[lo:hi], c.spec[lo:hi], c.q[lo:hi]
	for i := range q {
		v := min(int32(xp[i]*scale+roundOffset), maxQuant)
		if spec[i] < 0 {
			v = -v
		}
		q[i] = v
	}
}

// coded reports whether band b carries a scalefactor and spectral data of
// its own (as opposed to a silent band).
func (c *channel) coded(b int) bool { return c.qmax[b] > 0 || c.mustCode[b] }

// estimateBits prices the current quantization with each band in the
// cheaper codebook of its smallest pair and sections as runs of equal
// codebooks, setting c.cb and c.cost to that choice. The count is exact for
// that choice, so it is an upper bound of what the final sectioning
// (sectionOptimal) costs. It excludes global_gain and the flag bits.
func (c *channel) estimateBits(l *layout) int {
	swb, nb := l.off, l.nb
	total := 0
	for b := range nb {
		if !c.coded(b) {
			c.cb[b], c.cost[b] = zeroHCB, 0
			continue
		}
		p := pairFor(max(c.qmax[b], 1))
		x, y := pairCost(c.q[swb[b]:swb[b+1]], p)
		c.pairCost[b] = [2]int{x, y}
		cb, cost := 2*p+1, x
		if p < numPairs-1 && y < x {
			cb, cost = 2*p+2, y
		}
		c.cb[b], c.cost[b] = uint8(cb), cost
		total += cost
	}
	return total + c.sectionBits(l, l.per) + c.scalefactorBits(nb) + c.tnsF.bits()
}

// sectionBits is the size of section_data for the codebooks in c.cb over
// the first coded bands of each group.
func (c *channel) sectionBits(l *layout, coded int) int {
	bits, esc := 0, l.sectionEsc()
	for g := range l.groups {
		end := g*l.per + coded
		for b := g * l.per; b < end; {
			run := 1
			for b+run < end && c.cb[b+run] == c.cb[b] {
				run++
			}
			bits += 4 + int(l.lenBits)*(1+run/esc)
			b += run
		}
	}
	return bits
}

// scalefactorBits is the size of scale_factor_data for c.cb and c.sf.
func (c *channel) scalefactorBits(nb int) int {
	// The first difference is taken from global_gain, which equals the
	// first scalefactor, so it is 0.
	bits, last := 0, -1
	for b := range nb {
		if c.cb[b] == zeroHCB {
			continue
		}
		if last < 0 {
			last = b
		}
		bits += int(hcbScalefactor[c.sf[b]-c.sf[last]+maxSFDiff] >> 24)
		last = b
	}
	return bits
}

// bits is the size of the channel's section, scalefactor and spectral
// data over the first coded bands of each group with the chosen codebooks
// (bands beyond have codebook 0 and cost nothing).
func (c *channel) bits(l *layout, coded int) int {
	total := 0
	for b := range l.nb {
		total += c.cost[b]
	}
	return total + c.sectionBits(l, coded) + c.scalefactorBits(l.nb) + c.tnsF.bits()
}

// codedBands is max_sfb: one more than the highest band of any group with
// a non-zero codebook, or 0.
func (c *channel) codedBands(l *layout) int {
	n := 0
	for g := range l.groups {
		for b := l.per - 1; b >= n; b-- {
			if c.cb[g*l.per+b] != zeroHCB {
				n = b + 1
				break
			}
		}
	}
	return n
}

// sectionOptimal re-chooses the codebooks by dynamic programming over the
// bands, trading spectral bits against section headers: a band may move to
// a larger codebook to join its neighbours' section, and a silent band
// between two sections of one codebook may be coded with zeros (one
// scalefactor bit) instead of splitting them. It keeps the estimate's
// choice if that turns out cheaper (the programme ignores the extra length
// fields of sections over 30 bands), so the result never exceeds
// estimateBits.
func (c *channel) sectionOptimal(l *layout, scratch *sectionScratch) {
	swb, nb := l.off, l.nb
	estCB, estCost := c.cb, c.cost
	estimate := c.bits(l, l.per)
	header := 4 + int(l.lenBits)

	costs := &scratch.costs
	for b := range nb {
		row := &costs[b]
		for cb := range row {
			row[cb] = infBits
		}
		q := c.q[swb[b]:swb[b+1]]
		if !c.coded(b) {
			row[zeroHCB] = 0
			width := int(swb[b+1] - swb[b])
			for cb := 1; cb < numHCB; cb++ {
				row[cb] = zeroCodeBits[cb]*width/hcbDim(cb) + silentSFBits
			}
			continue
		}
		// The band's own pair was priced by estimateBits; the next
		// larger pair is the one that most often lets it join a section.
		p := pairFor(max(c.qmax[b], 1))
		row[2*p+1] = c.pairCost[b][0]
		if p < numPairs-1 {
			row[2*p+2] = c.pairCost[b][1]
			x, y := pairCost(q, p+1)
			row[2*p+3] = x
			if p+1 < numPairs-1 {
				row[2*p+4] = y
			}
		}
	}
	// Per group (sections do not cross groups), best[cb]: cheapest coding
	// of the group's bands up to b whose last section uses cb.
	for g := range l.groups {
		first, end := g*l.per, (g+1)*l.per
		if first == end {
			continue
		}
		var best, next [numHCB]int
		for cb := range best {
			best[cb] = header + costs[first][cb]
		}
		for b := first + 1; b < end; b++ {
			bestPrev, bestPrevCB := infBits, 0
			for cb, v := range best {
				if v < bestPrev {
					bestPrev, bestPrevCB = v, cb
				}
			}
			for cb := range next {
				stay, open := best[cb], bestPrev+header
				if stay <= open {
					next[cb] = stay + costs[b][cb]
					scratch.from[b][cb] = uint8(cb)
				} else {
					next[cb] = open + costs[b][cb]
					scratch.from[b][cb] = uint8(bestPrevCB)
				}
			}
			best = next
		}
		cb := 0
		for k, v := range best {
			if v < best[cb] {
				cb = k
			}
		}
		for b := end - 1; b >= first; b-- {
			c.cb[b], c.cost[b] = uint8(cb), costs[b][cb]
			if cb != zeroHCB && !c.coded(b) {
				c.cost[b] -= silentSFBits // counted by scalefactorBits
			}
			if b > first {
				cb = int(scratch.from[b][cb])
			}
		}
	}
	c.fillSilentScalefactors(nb)
	if c.bits(l, l.per) > estimate {
		c.cb, c.cost = estCB, estCost
	}
}

// fillSilentScalefactors gives silent bands that the sectioning coded with
// a non-zero codebook the scalefactor of the coded band before them (or
// the first one), so they cost one bit and leave the chain unchanged.
func (c *channel) fillSilentScalefactors(nb int) {
	last := -1
	for b := range nb {
		if c.coded(b) {
			last = b
			break
		}
	}
	if last < 0 {
		return
	}
	sf := c.sf[last]
	for b := range nb {
		if c.cb[b] == zeroHCB {
			continue
		}
		if !c.coded(b) {
			c.sf[b] = sf
		}
		sf = c.sf[b]
	}
}

// sectionScratch is sectionOptimal's working memory, kept in the Encoder
// so that a frame allocates nothing.
type sectionScratch struct {
	costs [maxBands][numHCB]int
	from  [maxBands][numHCB]uint8
}
