package aaclc

import "math"

// MDCT sizes: a long window spans two frames (2048 samples) and yields
// FrameSamples spectral lines.
const (
	windowLen = 2 * FrameSamples
	fftLen    = FrameSamples / 2 // complex points of the DCT-IV's FFT
	fftLog2   = 9
)

// mdct computes the long-window MDCT of ISO/IEC 14496-3 §4.6.11 (KBD
// window, window_shape 1) scaled as the standard's encoder formula
//
//	X[k] = 2 Σ z[n] cos(2π/N (n + n0)(k + 1/2)),  N = 2048, n0 = 513/2,
//
// so that a standard decoder reproduces input samples at their own scale.
//
// It folds the windowed 2048 samples into a DCT-IV of 1024 points (TDAC)
// and computes that with a 512-point complex FFT between a pre- and a
// post-twiddle: O(N log N) and no allocation after construction.
type mdct struct {
	window  [windowLen]float64 // ONLY_LONG_SEQUENCE
	start   [windowLen]float64 // LONG_START_SEQUENCE
	stop    [windowLen]float64 // LONG_STOP_SEQUENCE
	short   [shortLen]float64
	preCos  [fftLen]float64 // 2·e^{-iπ(4n+1)/(4·1024)}, the 2 being the formula's
	preSin  [fftLen]float64
	postCos [fftLen]float64 // e^{-iπk/1024}
	postSin [fftLen]float64
	bitrev  [fftLen]uint16
	twCos   [fftLen / 2]float64 // e^{-2πij/512}
	twSin   [fftLen / 2]float64
	re, im  [fftLen]float64
	folded  [FrameSamples]float64
}

func newMDCT() *mdct {
	m := &mdct{}
	kbdWindow(m.window[:], kbdAlphaLong)
	kbdWindow(m.short[:], kbdAlphaShort)
	// LONG_START: the long rise, flat, the short fall centred on 1536,
	// zero; LONG_STOP mirrors it (§4.6.11.3.2).
	const flat = shortStart
	for i := range windowLen {
		switch {
		case i < FrameSamples:
			m.start[i] = m.window[i]
		case i < FrameSamples+flat:
			m.start[i] = 1
		case i < FrameSamples+flat+shortLines:
			m.start[i] = m.short[shortLines+i-FrameSamples-flat]
		}
		m.stop[windowLen-1-i] = m.start[i]
	}
	const n4 = FrameSamples // DCT-IV length
	for n := range fftLen {
		a := -math.Pi * (4*float64(n) + 1) / (4 * n4)
		m.preCos[n], m.preSin[n] = 2*math.Cos(a), 2*math.Sin(a)
		b := -math.Pi * float64(n) / n4
		m.postCos[n], m.postSin[n] = math.Cos(b), math.Sin(b)
		r := 0
		for bit := range fftLog2 {
			r |= (n >> bit & 1) << (fftLog2 - 1 - bit)
		}
		m.bitrev[n] = uint16(r)
	}
	for j := range fftLen / 2 {
		a := -2 * math.Pi * float64(j) / fftLen
		m.twCos[j], m.twSin[j] = math.Cos(a), math.Sin(a)
	}
	return m
}

// transform writes the 1024 MDCT lines of window w over prev followed by
// cur (each FrameSamples long) into out.
func (m *mdct) transform(w *[windowLen]float64, prev, cur *[FrameSamples]float64, out *[FrameSamples]float64) {
	u := &m.folded
	// With z = w·[prev cur] cut in quarters a b c d, the MDCT is the
	// DCT-IV of (−c_r − d, a − b_r), _r meaning reversed.
	const h = FrameSamples / 2
	for n := range h {
		c := w[3*h-1-n] * cur[h-1-n]
		d := w[3*h+n] * cur[h+n]
		u[n] = -c - d
		a := w[n] * prev[n]
		b := w[2*h-1-n] * prev[2*h-1-n]
		u[h+n] = a - b
	}
	// DCT-IV by a half-length complex FFT: t[n] = (u[2n] + i·u[N−1−2n])
	// times the pre-twiddle, stored in bit-reversed order for the FFT.
	for n := range fftLen {
		xr, xi := u[2*n], u[FrameSamples-1-2*n]
		j := m.bitrev[n]
		m.re[j] = xr*m.preCos[n] - xi*m.preSin[n]
		m.im[j] = xr*m.preSin[n] + xi*m.preCos[n]
	}
	m.fft()
	for k := range fftLen {
		cr := m.re[k]*m.postCos[k] - m.im[k]*m.postSin[k]
		ci := m.re[k]*m.postSin[k] + m.im[k]*m.postCos[k]
		out[2*k] = cr
		out[FrameSamples-1-2*k] = -ci
	}
}

// fft is an in-place decimation-in-time FFT over re/im, whose input is
// already in bit-reversed order. The first two radix-2 stages need no
// multiplications; the next six go in pairs (radix 2², each element
// loaded once per pair of stages); the last is a plain radix-2 stage.
func (m *mdct) fft() {
	re, im := &m.re, &m.im
	for i := 0; i < fftLen; i += 4 {
		r0, i0 := re[i]+re[i+1], im[i]+im[i+1]
		r1, i1 := re[i]-re[i+1], im[i]-im[i+1]
		r2, i2 := re[i+2]+re[i+3], im[i+2]+im[i+3]
		r3, i3 := re[i+2]-re[i+3], im[i+2]-im[i+3]
		// Second stage: twiddles 1 and −i.
		re[i], im[i] = r0+r2, i0+i2
		re[i+2], im[i+2] = r0-r2, i0-i2
		re[i+1], im[i+1] = r1+i3, i1-r3
		re[i+3], im[i+3] = r1-i3, i1+r3
	}
	size := 8
	for ; 2*size <= fftLen/2; size *= 4 {
		// Stages of size L = size and 2L over blocks of 2L.
		q := size / 2
		s1, s2 := fftLen/size, fftLen/(2*size)
		for start := 0; start < fftLen; start += 2 * size {
			for j := range q {
				a, b, c, d := start+j, start+j+q, start+j+2*q, start+j+3*q
				w1r, w1i := m.twCos[j*s1], m.twSin[j*s1]
				tr := re[b]*w1r - im[b]*w1i
				ti := re[b]*w1i + im[b]*w1r
				x0r, x0i := re[a]+tr, im[a]+ti
				x1r, x1i := re[a]-tr, im[a]-ti
				tr = re[d]*w1r - im[d]*w1i
				ti = re[d]*w1i + im[d]*w1r
				x2r, x2i := re[c]+tr, im[c]+ti
				x3r, x3i := re[c]-tr, im[c]-ti
				w2r, w2i := m.twCos[j*s2], m.twSin[j*s2]
				tr = x2r*w2r - x2i*w2i
				ti = x2r*w2i + x2i*w2r
				re[a], im[a] = x0r+tr, x0i+ti
				re[c], im[c] = x0r-tr, x0i-ti
				// The twiddle of the odd half is −i·w2.
				tr = x3r*w2i + x3i*w2r
				ti = x3i*w2i - x3r*w2r
				re[b], im[b] = x1r+tr, x1i+ti
				re[d], im[d] = x1r-tr, x1i-ti
			}
		}
	}
	for ; size <= fftLen; size *= 2 {
		half := size / 2
		step := fftLen / size
		for start := 0; start < fftLen; start += size {
			for j := range half {
				wr, wi := m.twCos[j*step], m.twSin[j*step]
				a, b := start+j, start+j+half
				tr := re[b]*wr - im[b]*wi
				ti := re[b]*wi + im[b]*wr
				re[b], im[b] = re[a]-tr, im[a]-ti
				re[a], im[a] = re[a]+tr, im[a]+ti
			}
		}
	}
}

// kbdAlphaLong is the Kaiser-Bessel-derived window's alpha for long
// windows (§4.6.11.3.1).
const kbdAlphaLong = 4

// kbdWindow fills w with the KBD window: its sidelobes fall much faster
// than the sine window's, so a loud tone leaks far less into distant
// bands, which would otherwise cost bits to code.
// It fills all of w (the window length).
func kbdWindow(w []float64, alpha float64) {
	half := len(w) / 2
	kernel := make([]float64, half+1)
	sum := 0.0
	for n := range kernel {
		r := (float64(n) - float64(half)/2) / (float64(half) / 2)
		kernel[n] = besselI0(math.Pi * alpha * math.Sqrt(max(1-r*r, 0)))
		sum += kernel[n]
	}
	acc := 0.0
	for n := range half {
		acc += kernel[n]
		w[n] = math.Sqrt(acc / sum)
		w[len(w)-1-n] = w[n]
	}
}

// besselI0 is the modified Bessel function of the first kind, order 0,
// by its power series (converges quickly for the arguments used here).
func besselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	for k := 1; term > 1e-12*sum; k++ {
		f := x / (2 * float64(k))
		term *= f * f
		sum += term
	}
	return sum
}
