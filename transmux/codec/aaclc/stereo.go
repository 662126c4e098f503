package aaclc

import "math"

// Mid/side stereo (§4.6.8.1): a band of a channel pair may carry
// M = (L+R)/2 and S = (L−R)/2 instead of L and R; the decoder restores
// L = M+S and R = M−S. For correlated channels one of M and S is much
// quieter than L and R and costs few bits; for a dual-mono source (a mono
// microphone sent as stereo) S is exactly zero and the pair costs about
// what one channel does.

// msDecide chooses L/R or M/S per band and, for the M/S bands, replaces
// the two channels' spectra by M and S and redoes their analysis.
//
// The choice compares estimated bits at the same audible noise. A band
// coded with noise N costs about (width/2)·log2(E/N) bits above zero, or
// nothing when E ≤ N. L/R may take the noise the masking model allows
// each channel (N_L, N_R). In M/S the noise of M and of S both reach L and
// R, so together they may take only min(N_L, N_R): split evenly, or, when
// one of them is below half of it (it will quantize to zero), that one
// takes its own energy as noise and the other the rest. The noise levels
// are scaled by the previous frame's global offset, the best guess of this
// frame's, so the comparison sees roughly the noise rate control will set.
// M/S must win by a margin (msGain).
func (e *Encoder) msDecide() {
	l, r := &e.chans[0], &e.chans[1]
	lay := l.lay
	m := lay.m
	offsetLog := 3 * float64(e.offset) / 8
	for b := range lay.nb {
		e.msUsed[b] = false
		if e.noMS || l.silent[b] || r.silent[b] {
			continue
		}
		lo, hi := int(lay.off[b]), int(lay.off[b+1])
		var em, es float64
		for i := lo; i < hi; i++ {
			mv := (l.spec[i] + r.spec[i]) / 2
			sv := (l.spec[i] - r.spec[i]) / 2
			em += mv * mv
			es += sv * sv
		}
		nl := math.Exp2(l.logNoise[b] + offsetLog)
		nr := math.Exp2(r.logNoise[b] + offsetLog)
		nmin := min(nl, nr)
		costLR := bandCost(l.energy[b], nl) + bandCost(r.energy[b], nr)
		nm, ns := nmin/2, nmin/2
		// The threshold of hearing applies to L and R, which each get
		// both channels' noise: half of it for each, unless one of them
		// quantizes to zero and brings only its own (small) energy.
		ath := math.Exp2(m.logATH[b])
		athM, athS := m.logATH[b]-1, m.logATH[b]-1
		switch {
		case es < nmin/2:
			ns, nm = es, nmin-es
			athM = log2Fast(max(ath-es, ath/2))
		case em < nmin/2:
			nm, ns = em, nmin-em
			athS = log2Fast(max(ath-em, ath/2))
		}
		// M/S is taken when it is free (both quantize to zero at most)
		// or wins by the margin.
		if costMS := bandCost(em, nm) + bandCost(es, ns); costMS > 0 && costMS >= msGain*costLR {
			continue
		}
		e.msUsed[b] = true
		for i := lo; i < hi; i++ {
			l.spec[i], r.spec[i] = (l.spec[i]+r.spec[i])/2, (l.spec[i]-r.spec[i])/2
		}
		for _, x := range [2]struct {
			c      *channel
			n, ath float64
		}{{l, nm, athM}, {r, ns, athS}} {
			x.c.analyzeBand(lay.off, b)
			x.c.athMS[b] = x.ath - m.logATH[b]
			if !x.c.silent[b] {
				x.c.setScalefactorLimits(b, math.Log2(max(x.n, 1e-30))-offsetLog, x.ath)
			}
		}
	}
}

// msGain is the part of the L/R cost M/S must undercut: with independent
// channels of equal level both estimates are equal and their noise would
// pick M/S in every other band, at a small loss the estimate does not see.
const msGain = 0.9

// bandCost is log2 of the signal-to-noise ratio a band must be coded
// with, the bits per two lines it roughly costs, 0 when the noise allowed
// exceeds the signal.
func bandCost(energy, noise float64) float64 {
	if energy <= noise {
		return 0
	}
	return log2Fast(energy / noise)
}

// msMode is ms_mask_present for the first nb bands of each group: 0 when
// no band is M/S, 2 when all are, else 1 (one ms_used flag per band and
// group follows).
func (e *Encoder) msMode(nb int) int {
	l := e.chans[0].lay
	anyMS, all := false, nb > 0
	for g := range l.groups {
		for b := g * l.per; b < g*l.per+nb; b++ {
			anyMS = anyMS || e.msUsed[b]
			all = all && e.msUsed[b]
		}
	}
	switch {
	case all:
		return 2
	case anyMS:
		return 1
	}
	return 0
}
