package aaclc

import "fmt"

// Syntax element ids and fixed field values (§4.4.2).
const (
	idSCE = 0
	idCPE = 1
	idEND = 7

	// Bits of everything but section, scalefactor and spectral data:
	// id_syn_ele + element_instance_tag, ics_info (reserved bit, window
	// sequence, window shape, max_sfb, predictor flag), per channel
	// global_gain and the pulse/TNS/gain-control flags, common_window and
	// ms_mask_present for a pair, and the END element.
	elementHeaderBits = 3 + 4
	icsInfoBits       = 1 + 2 + 1 + 6 + 1
	// icsInfoShortExtra: an EIGHT_SHORT ics_info has a 4-bit max_sfb and 7
	// grouping bits instead of 6 and a predictor flag.
	icsInfoShortExtra = 4 + 7 - 6 - 1
	channelFixedBits  = 8 + 3
	endBits           = 3
)

// Global offset search range, in scalefactor steps of 1.5 dB of step size.
// At minOffset the noise lies far below 16-bit resolution, so finer
// quantization buys nothing; at maxOffset every scalefactor is 255 and
// every band quantizes to zero, so that offset always fits.
const (
	minOffset = -96
	maxOffset = maxSF + 1
	// maxPasses bounds the bit-counting passes of the offset search. A
	// warm start converges in two to four; a frame after silence starts
	// near minOffset and needs up to eight passes to bracket and eight to
	// bisect the 350 offsets. With 7, such frames (every attack after a
	// pause) stopped at the first offset that fitted, often 30 steps too
	// coarse, whatever the bit rate.
	maxPasses = 16
	// balanceShare is the part of the unused-bit balance one frame may take.
	balanceShare = 0.25
	// attackShare is that part for frames with attacks or short windows.
	attackShare = 0.75
)

// Encode encodes one frame: pcm holds FrameSamples samples per channel,
// interleaved. It appends the raw AAC frame (a raw_data_block, no ADTS
// header) to dst and returns the extended slice. Frame n decodes to the
// input of frame n−1 (see the package doc).
func (e *Encoder) Encode(dst []byte, pcm []int16) ([]byte, error) {
	nch := len(e.chans)
	if len(pcm) != FrameSamples*nch {
		return dst, fmt.Errorf("%w: got %d samples, want %d", ErrPCMLength, len(pcm), FrameSamples*nch)
	}
	var zero [2]bool
	early, late := false, false
	for ch := range e.chans {
		c := &e.chans[ch]
		var or int16
		for i := range c.cur {
			v := pcm[i*nch+ch]
			or |= v
			c.cur[i] = float64(v)
		}
		zero[ch] = or == 0
		a, b := c.detectAttack(&c.cur)
		early, late = early || a, late || b
	}
	// Both channels of a pair share the window (common_window).
	if e.noShort {
		early, late = false, false
	}
	e.seq = nextSequence(e.seq, early, late)
	e.lay = &e.long
	if e.seq == eightShort {
		e.lay = e.short
		e.shortFrame(zero)
	}
	tnsOn := early || late
	for ch := range e.chans {
		c := &e.chans[ch]
		c.tnsF.on = false
		switch {
		case zero[ch] && c.prevZero:
			// The window spans only digital silence, so the spectrum is
			// exactly zero: skip the transform (muted streams are common).
			c.markSilent(e.lay.nb)
		case e.seq == longStart:
			e.mdct.transform(&e.mdct.start, &c.prev, &c.cur, &c.spec)
			e.applyTNS(c, tnsOn)
			c.analyze(e.lay)
		case e.seq == longStop:
			e.mdct.transform(&e.mdct.stop, &c.prev, &c.cur, &c.spec)
			e.applyTNS(c, tnsOn)
			c.analyze(e.lay)
		case e.seq == onlyLong:
			e.mdct.transform(&e.mdct.window, &c.prev, &c.cur, &c.spec)
			e.applyTNS(c, tnsOn)
			c.analyze(e.lay)
		default: // transformed and grouped by shortFrame
			c.analyze(e.lay)
		}
		c.prev, c.prevZero = c.cur, zero[ch]
	}
	clear(e.msUsed[:])
	if nch == 2 {
		e.msDecide()
	}

	share := balanceShare
	if early || late || e.seq != onlyLong {
		// An attack (or the short frames around one) borrows more: its
		// noise is what is heard as pre-echo, and quiet frames before it
		// left bits unused.
		share = attackShare
	}
	budget := min(int(e.frameBits+share*e.balance), e.maxBits)
	e.offset = e.searchOffset(budget)

	if !e.allSilent() {
		// (Silence is all ZERO_HCB already, as the estimate left it.)
		for ch := range e.chans {
			e.chans[ch].sectionOptimal(e.lay, &e.sections)
		}
	}
	// max_sfb stops after the last band either channel codes: trailing
	// silent bands then cost nothing instead of a section.
	e.codedSFB = 0
	for ch := range e.chans {
		e.codedSFB = max(e.codedSFB, e.chans[ch].codedBands(e.lay))
	}
	bits := e.fixedBits(e.codedSFB)
	for ch := range e.chans {
		bits += e.chans[ch].bits(e.lay, e.codedSFB)
	}
	start := len(dst)
	dst = e.write(dst)
	written := 8 * (len(dst) - start)
	if written != roundUpToByte(bits) {
		// The counters and the writer disagree: a bug, but one that
		// must not reach a decoder as a corrupt stream.
		return dst[:start], fmt.Errorf("aaclc: internal error: wrote %d bits, counted %d", written, bits)
	}
	e.balance = min(max(e.balance+e.frameBits-float64(written), 0), float64(e.maxBits))
	return dst, nil
}

// applyTNS runs the TNS decision on a long frame's spectrum when the frame
// has an attack (before the M/S decision: the decoder undoes M/S first,
// then TNS per channel).
func (e *Encoder) applyTNS(c *channel, attack bool) {
	if !attack || e.noTNS || e.tnsHi <= e.tnsLo {
		return
	}
	c.tns(int(e.swb[e.tnsLo]), int(e.swb[e.tnsHi]), len(e.swb)-1-e.tnsLo, tnsMinGain)
}

// shortFrame transforms the channels that are not silent with short
// windows, groups the windows by their energy (common to the pair) and
// puts the spectra in group order.
func (e *Encoder) shortFrame(zero [2]bool) {
	l := e.short
	var energy [shortWindows]float64
	for ch := range e.chans {
		c := &e.chans[ch]
		if zero[ch] && c.prevZero {
			continue
		}
		e.mdct.transformShort(&c.prev, &c.cur, &c.spec, l.width)
		for w := range shortWindows {
			for _, v := range c.spec[w*l.width : (w+1)*l.width] {
				energy[w] += v * v
			}
		}
	}
	var lens [shortWindows]int
	n := groupWindows(&energy, &lens)
	l.setGroups(lens[:n])
	for ch := range e.chans {
		c := &e.chans[ch]
		if !zero[ch] || !c.prevZero {
			l.regroup(&c.spec, &e.mdct.folded)
		}
	}
}

func roundUpToByte(bits int) int { return (bits + 7) &^ 7 }

// fixedBits counts the bits outside the channels' section, scalefactor
// and spectral data for max_sfb nb. It grows with nb (the ms_used flags),
// so counting at e.maxSFB bounds the final frame's count.
func (e *Encoder) fixedBits(nb int) int {
	bits := elementHeaderBits + icsInfoBits + endBits + len(e.chans)*channelFixedBits
	if e.lay.short {
		bits += icsInfoShortExtra
	}
	if len(e.chans) == 2 {
		bits += 1 + 2 // common_window, ms_mask_present
		if e.msMode(nb) == 1 {
			bits += e.lay.groups * nb // ms_used per band and group
		}
	}
	return bits
}

// countAt quantizes every channel at global offset d and returns the
// frame size (an upper bound of the final one).
func (e *Encoder) countAt(d int) int {
	bits := e.fixedBits(e.lay.per)
	for ch := range e.chans {
		c := &e.chans[ch]
		c.quantize(e.lay.off, e.lay.nb, d)
		bits += c.estimateBits(e.lay)
	}
	return roundUpToByte(bits)
}

// searchOffset finds the smallest global offset (finest quantization)
// whose frame fits in budget bits, starting from the last frame's offset:
// a galloping search brackets it, bisection narrows it, within maxPasses
// counting passes. It leaves the channels quantized at the offset
// returned.
func (e *Encoder) searchOffset(budget int) int {
	if e.allSilent() {
		// Nothing to code: every offset gives the same empty frame. Keep
		// the last one as the next frame's start rather than galloping to
		// minOffset, far from where the sound after a pause will need.
		e.countAt(e.offset)
		return e.offset
	}
	good, bad := maxOffset, minOffset-1 // good fits (maxOffset always does); bad does not
	last, passes := 0, 0
	try := func(d int) bool {
		passes++
		last = d
		if e.countAt(d) <= budget {
			good = d
			return true
		}
		bad = d
		return false
	}
	d := min(max(e.offset, minOffset), maxOffset)
	if try(d) {
		for step := 1; passes < maxPasses && good > minOffset; step *= 2 {
			if !try(max(good-step, minOffset)) {
				break
			}
		}
	} else {
		for step := 2; passes < maxPasses && bad < maxOffset-1; step *= 2 {
			if try(min(bad+step, maxOffset)) {
				break
			}
		}
	}
	for passes < maxPasses && good-bad > 1 {
		try((good + bad) / 2)
	}
	if last != good {
		e.countAt(good)
	}
	return good
}

// allSilent reports whether every band of every channel is exactly zero.
func (e *Encoder) allSilent() bool {
	for ch := range e.chans {
		for _, s := range e.chans[ch].silent[:e.lay.nb] {
			if !s {
				return false
			}
		}
	}
	return true
}

// write appends the raw_data_block of the quantized, sectioned channels.
func (e *Encoder) write(dst []byte) []byte {
	w := &e.bw
	w.reset(dst)
	if len(e.chans) == 1 {
		w.put(idSCE, 3)
		w.put(0, 4) // element_instance_tag
		e.writeChannel(&e.chans[0], true)
	} else {
		w.put(idCPE, 3)
		w.put(0, 4)
		w.put(1, 1) // common_window
		e.writeICSInfo()
		mode := e.msMode(e.codedSFB)
		w.put(uint32(mode), 2) // ms_mask_present
		if mode == 1 {
			l := e.lay
			for g := range l.groups {
				for b := g * l.per; b < g*l.per+e.codedSFB; b++ {
					v := uint32(0)
					if e.msUsed[b] {
						v = 1
					}
					w.put(v, 1)
				}
			}
		}
		e.writeChannel(&e.chans[0], false)
		e.writeChannel(&e.chans[1], false)
	}
	w.put(idEND, 3)
	w.align()
	dst = w.buf
	w.buf = nil
	return dst
}

func (e *Encoder) writeICSInfo() {
	w := &e.bw
	w.put(0, 1) // ics_reserved_bit
	w.put(uint32(e.seq), 2)
	w.put(1, 1) // window_shape: KBD
	if e.lay.short {
		w.put(uint32(e.codedSFB), 4)
		w.put(e.lay.groupingBits(), 7)
		return
	}
	w.put(uint32(e.codedSFB), 6)
	w.put(0, 1) // predictor_data_present
}

// writeChannel writes an individual_channel_stream. Bands go group by
// group, the first codedSFB of each.
func (e *Encoder) writeChannel(c *channel, withInfo bool) {
	w := &e.bw
	l := e.lay
	nb := e.codedSFB
	globalGain := c.firstScalefactor(l, nb)
	w.put(uint32(globalGain), 8)
	if withInfo {
		e.writeICSInfo()
	}
	// section_data
	esc := l.sectionEsc()
	for g := range l.groups {
		end := g*l.per + nb
		for b := g * l.per; b < end; {
			run := 1
			for b+run < end && c.cb[b+run] == c.cb[b] {
				run++
			}
			w.put(uint32(c.cb[b]), 4)
			n := run
			for ; n >= esc; n -= esc {
				w.put(uint32(esc), l.lenBits)
			}
			w.put(uint32(n), l.lenBits)
			b += run
		}
	}
	// scale_factor_data
	last := globalGain
	for g := range l.groups {
		for b := g * l.per; b < g*l.per+nb; b++ {
			if c.cb[b] == zeroHCB {
				continue
			}
			w.putCode(hcbScalefactor[c.sf[b]-last+maxSFDiff])
			last = c.sf[b]
		}
	}
	w.put(0, 1) // pulse_data_present
	if c.tnsF.on {
		w.put(1, 1)
		c.tnsF.write(w)
	} else {
		w.put(0, 1)
	}
	w.put(0, 1) // gain_control_data_present
	// spectral_data
	for g := range l.groups {
		for b := g * l.per; b < g*l.per+nb; b++ {
			cb := int(c.cb[b])
			if cb == zeroHCB {
				continue
			}
			lo, hi := l.off[b], l.off[b+1]
			if c.coded(b) {
				writeBand(w, c.q[lo:hi], cb)
			} else {
				writeZeros(w, cb, int(hi-lo))
			}
		}
	}
}

// firstScalefactor is global_gain: the scalefactor of the first band
// written with a non-zero codebook (so that its difference is 0), or
// sfOffset when there is none.
func (c *channel) firstScalefactor(l *layout, nb int) int {
	for g := range l.groups {
		for b := g * l.per; b < g*l.per+nb; b++ {
			if c.cb[b] != zeroHCB {
				return c.sf[b]
			}
		}
	}
	return sfOffset
}
