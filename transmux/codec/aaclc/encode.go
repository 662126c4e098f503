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
	// attackShare is that part for frames with short windows.
	// 0.35, not round 1's 0.75: at 0.75 an attack after a pause took
	// nearly the whole balance (11.8k bits at 128k, at the finest offset),
	// starving the frames of its decay, where the transient's noise-to-mask
	// ratio is decided (mean NMR 22.1/19.9/18.2 → 18.4/17.5/16.6 dB at
	// 96/128/160k); recorded speech's pre-echo gives 0.5–1.9 dB back.
	attackShare = 0.35
	// longAttackShare is that part for a long frame whose window holds an
	// attack the short windows could not reach.
	longAttackShare = 0.75
)

// Encode encodes one frame: pcm holds FrameSamples samples per channel,
// ahead the first LookAheadSamples samples per channel of the frame after
// it (silence at the end of the stream), both interleaved. It appends the
// raw AAC frame (a raw_data_block, no ADTS header) to dst and returns the
// extended slice. Frame n decodes to the input of frame n−1 (see the
// package doc).
func (e *Encoder) Encode(dst []byte, pcm, ahead []int16) ([]byte, error) {
	nch := len(e.chans)
	if len(pcm) != FrameSamples*nch || len(ahead) != LookAheadSamples*nch {
		return dst, fmt.Errorf("%w: got %d and %d samples, want %d and %d", ErrPCMLength,
			len(pcm), len(ahead), FrameSamples*nch, LookAheadSamples*nch)
	}
	var strong, weak, aheadStrong, aheadWeak [2]attacks
	for ch := range e.chans {
		c := &e.chans[ch]
		c.prev, c.cur = c.cur, c.prev
		c.prevZero = c.curZero
		var or int16
		for i := range c.cur {
			v := pcm[i*nch+ch]
			or |= v
			c.cur[i] = float64(v)
		}
		c.curZero = or == 0
		for i := range c.ahead {
			c.ahead[i] = float64(ahead[i*nch+ch])
		}
		strong[ch], weak[ch] = c.detectAttack(c.cur[:], true)
		aheadStrong[ch], aheadWeak[ch] = c.detectAttack(c.ahead[:], false)
	}
	cur, next := e.joinAttacks(strong, weak), e.joinAttacks(aheadStrong, aheadWeak)
	// This frame's short windows would cover an attack late in prev or
	// early in cur (the last frame saw the early ones in its look-ahead,
	// so it is already LONG_START or EIGHT_SHORT); the next frame's, one
	// late in cur or early in the look-ahead.
	longAttack, anyShort := false, false
	for ch := range e.chans {
		c := &e.chans[ch]
		c.attackNow = c.latePrev || cur[ch].early
		c.latePrev = cur[ch].late
		c.seq = nextSequence(c.seq, c.attackNow, cur[ch].late || next[ch].early)
		if e.noShort {
			c.seq = onlyLong
		}
		c.lay = &e.long
		anyShort = anyShort || c.seq != onlyLong
		longAttack = longAttack || c.attackNow && c.seq != eightShort
	}
	// A pair whose channels have the same window shares it
	// (common_window), which M/S needs.
	e.common = nch == 2 && e.chans[0].seq == e.chans[1].seq
	e.shortFrame()
	for ch := range e.chans {
		c := &e.chans[ch]
		c.tnsF.on = false
		switch {
		case c.prevZero && c.curZero:
			// The window spans only digital silence, so the spectrum is
			// exactly zero: skip the transform (muted streams are common).
			c.markSilent(c.lay.nb)
		case c.seq == longStart:
			e.mdct.transform(&e.mdct.start, c.prev, c.cur, &c.spec)
			e.applyTNS(c, c.attackNow)
			c.analyze(c.lay)
		case c.seq == longStop:
			e.mdct.transform(&e.mdct.stop, c.prev, c.cur, &c.spec)
			e.applyTNS(c, c.attackNow)
			c.analyze(c.lay)
		case c.seq == onlyLong:
			e.mdct.transform(&e.mdct.window, c.prev, c.cur, &c.spec)
			e.applyTNS(c, c.attackNow)
			c.analyze(c.lay)
		default: // transformed and grouped by shortFrame
			c.analyze(c.lay)
		}
	}
	clear(e.msUsed[:])
	if e.common {
		e.msDecide()
	}

	share := balanceShare
	switch {
	case longAttack:
		// An attack in a long window (a stream's first frame, or short
		// windows switched off) has only bits and TNS against its
		// pre-echo: it borrows most of what quiet frames left unused.
		share = longAttackShare
	case anyShort:
		// Short windows around an attack keep its noise near it; they
		// borrow a little more, and leave the rest to the attack's decay.
		share = attackShare
	}
	budget := min(int(e.frameBits+share*e.balance), e.maxBits)
	offset, estimate := e.searchOffset(budget)
	e.offset = offset
	if estimate < budget/2 && !e.noRelief && !e.allSilent() {
		// The bands sit at their floors, most often the threshold of
		// hearing, with bits to spare: a quiet passage. Its noise is what
		// is heard when the volume goes up and, before an onset, as
		// pre-echo, so spend the bits: lower the floor and search again.
		for ch := range e.chans {
			e.chans[ch].lowerFloor(athRelief, &e.msUsed)
		}
		e.offset, _ = e.searchOffset(budget)
	}

	if !e.allSilent() {
		// (Silence is all ZERO_HCB already, as the estimate left it.)
		for ch := range e.chans {
			c := &e.chans[ch]
			c.sectionOptimal(c.lay, &e.sections)
		}
	}
	// max_sfb stops after the last band the channel codes (either channel
	// with a common window): trailing silent bands then cost nothing
	// instead of a section.
	for ch := range e.chans {
		c := &e.chans[ch]
		c.codedSFB = c.codedBands(c.lay)
	}
	if e.common {
		n := max(e.chans[0].codedSFB, e.chans[1].codedSFB)
		e.chans[0].codedSFB, e.chans[1].codedSFB = n, n
	}
	bits := e.fixedBits(false)
	for ch := range e.chans {
		c := &e.chans[ch]
		bits += c.bits(c.lay, c.codedSFB)
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

// joinAttacks gives each channel its own attacks, and for a pair the
// other channel's where its own energy rises too (a stereo mix, or
// dual-mono, whose channels then keep a common window and M/S). A channel
// without a rise (a hard-panned instrument that rings on) keeps its long
// windows, which code it far better.
func (e *Encoder) joinAttacks(strong, weak [2]attacks) [2]attacks {
	out := strong
	if len(e.chans) == 2 {
		for ch := range 2 {
			o := strong[1-ch]
			out[ch].early = out[ch].early || weak[ch].early && o.early
			out[ch].late = out[ch].late || weak[ch].late && o.late
		}
	}
	return out
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

// shortFrame transforms the channels with short windows that are not
// silent, groups the windows by their energy (common to a pair with a
// common window) and puts the spectra in group order.
func (e *Encoder) shortFrame() {
	var energy [2][shortWindows]float64
	for ch := range e.chans {
		c := &e.chans[ch]
		if c.seq != eightShort {
			continue
		}
		c.lay = c.short
		if c.prevZero && c.curZero {
			continue
		}
		l := c.short
		e.mdct.transformShort(c.prev, c.cur, &c.spec, l.width)
		for w := range shortWindows {
			for _, v := range c.spec[w*l.width : (w+1)*l.width] {
				energy[ch][w] += v * v
			}
		}
	}
	if e.common {
		for w := range shortWindows {
			energy[0][w] += energy[1][w]
			energy[1][w] = energy[0][w]
		}
	}
	for ch := range e.chans {
		c := &e.chans[ch]
		if c.seq != eightShort {
			continue
		}
		var lens [shortWindows]int
		n := groupWindows(&energy[ch], &lens)
		c.short.setGroups(lens[:n])
		if !c.prevZero || !c.curZero {
			c.short.regroup(&c.spec, &e.mdct.folded)
		}
	}
}

func roundUpToByte(bits int) int { return (bits + 7) &^ 7 }

// fixedBits counts the bits outside the channels' section, scalefactor
// and spectral data: at each channel's codedSFB, or for the estimate
// (estimate set) at every band, which bounds the final frame's count (the
// ms_used flags grow with max_sfb).
func (e *Encoder) fixedBits(estimate bool) int {
	bits := elementHeaderBits + endBits + len(e.chans)*channelFixedBits
	ics := func(c *channel) int {
		if c.lay.short {
			return icsInfoBits + icsInfoShortExtra
		}
		return icsInfoBits
	}
	switch {
	case len(e.chans) == 1:
		bits += ics(&e.chans[0])
	case e.common:
		c := &e.chans[0]
		nb := c.codedSFB
		if estimate {
			nb = c.lay.per
		}
		bits += 1 + ics(c) + 2 // common_window, ics_info, ms_mask_present
		if e.msMode(nb) == 1 {
			bits += c.lay.groups * nb // ms_used per band and group
		}
	default:
		bits += 1 + ics(&e.chans[0]) + ics(&e.chans[1])
	}
	return bits
}

// countAt quantizes every channel at global offset d and returns the
// frame size (an upper bound of the final one).
func (e *Encoder) countAt(d int) int {
	bits := e.fixedBits(true)
	for ch := range e.chans {
		c := &e.chans[ch]
		c.quantize(c.lay.off, c.lay.nb, d)
		bits += c.estimateBits(c.lay)
	}
	return roundUpToByte(bits)
}

// searchOffset finds the smallest global offset (finest quantization)
// whose frame fits in budget bits, starting from the last frame's offset:
// a galloping search brackets it, bisection narrows it, within maxPasses
// counting passes. It leaves the channels quantized at the offset
// returned, and returns that frame's size too.
func (e *Encoder) searchOffset(budget int) (offset, bits int) {
	if e.allSilent() {
		// Nothing to code: every offset gives the same empty frame. Keep
		// the last one as the next frame's start rather than galloping to
		// minOffset, far from where the sound after a pause will need.
		return e.offset, e.countAt(e.offset)
	}
	good, bad := maxOffset, minOffset-1 // good fits (maxOffset always does); bad does not
	goodBits, last, passes := 0, 0, 0
	try := func(d int) bool {
		passes++
		last = d
		if n := e.countAt(d); n <= budget {
			good, goodBits = d, n
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
		goodBits = e.countAt(good)
	}
	return good, goodBits
}

// allSilent reports whether every band of every channel is exactly zero.
func (e *Encoder) allSilent() bool {
	for ch := range e.chans {
		c := &e.chans[ch]
		for _, s := range c.silent[:c.lay.nb] {
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
	} else if !e.common {
		w.put(idCPE, 3)
		w.put(0, 4)
		w.put(0, 1) // common_window
		e.writeChannel(&e.chans[0], true)
		e.writeChannel(&e.chans[1], true)
	} else {
		w.put(idCPE, 3)
		w.put(0, 4)
		w.put(1, 1) // common_window
		c := &e.chans[0]
		e.writeICSInfo(c)
		mode := e.msMode(c.codedSFB)
		w.put(uint32(mode), 2) // ms_mask_present
		if mode == 1 {
			l := c.lay
			for g := range l.groups {
				for b := g * l.per; b < g*l.per+c.codedSFB; b++ {
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

func (e *Encoder) writeICSInfo(c *channel) {
	w := &e.bw
	w.put(0, 1) // ics_reserved_bit
	w.put(uint32(c.seq), 2)
	w.put(1, 1) // window_shape: KBD
	if c.lay.short {
		w.put(uint32(c.codedSFB), 4)
		w.put(c.lay.groupingBits(), 7)
		return
	}
	w.put(uint32(c.codedSFB), 6)
	w.put(0, 1) // predictor_data_present
}

// writeChannel writes an individual_channel_stream. Bands go group by
// group, the first codedSFB of each.
func (e *Encoder) writeChannel(c *channel, withInfo bool) {
	w := &e.bw
	l := c.lay
	nb := c.codedSFB
	globalGain := c.firstScalefactor(l, nb)
	w.put(uint32(globalGain), 8)
	if withInfo {
		e.writeICSInfo(c)
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
