package aaclc

import "math"

// Temporal noise shaping (§4.6.9) on long windows: a linear predictor
// across the frequency lines of a frame whose signal is peaky in time (an
// attack inside the window) whitens the spectrum; the decoder's all-pole
// filter undoes it and shapes the quantization noise in time like the
// signal's envelope, so it gathers around the attack instead of spreading
// evenly over the window before it. With the look-ahead (blocks.go) every
// attack the detector finds gets short windows, so a long frame is
// filtered only where one falls in it anyway: the first frame of a stream,
// or every frame with short windows switched off (the tests' comparison).
//
// One filter per channel, order up to tnsOrder, 4-bit reflection
// coefficients, upwards over the bands from about 1 kHz to the lower of
// the low-pass and TNS_MAX_BANDS.

const (
	tnsOrder = 8
	// tnsMinGain is the prediction gain (signal over residual energy) from
	// which a frame with an attack is filtered. Frames without one are not
	// analysed at all: in the quality report, filtering decaying notes by
	// gain alone bought nothing and cost SNR, and the analysis cost 9% of
	// the encoding time.
	tnsMinGain = 1.4
	tnsStartHz = 1000
	// tnsCoefBits is the coefficient resolution (coef_res 1: 4 bits).
	tnsCoefBits = 4
)

// tnsMaxBandsLong is TNS_MAX_BANDS for long windows of AAC-LC (Table
// 4.156) by sampling_frequency_index 3, 4, 5 (48, 44.1, 32 kHz).
func tnsMaxBandsLong(freqIdx int) int {
	switch freqIdx {
	case 3:
		return 40
	case 4:
		return 42
	}
	return 51
}

// tnsIQ are the decoder's inverse quantization factors for positive and
// negative coefficient indices: k = sin(idx/factor).
var tnsIQ = [2]float64{
	(1<<(tnsCoefBits-1) - 0.5) / (math.Pi / 2),
	(1<<(tnsCoefBits-1) + 0.5) / (math.Pi / 2),
}

// tnsFilter is one channel's filter of the frame.
type tnsFilter struct {
	on     bool
	order  int
	length int // bands from the top (num_swb) down to the start band
	coef   [tnsOrder]int8
	// Lines filtered and log2 of the prediction gain achieved.
	lo, hi  int
	logGain float64
}

// bits is the size of tns_data (the presence flag is counted elsewhere).
func (f *tnsFilter) bits() int {
	if !f.on {
		return 0
	}
	// n_filt, coef_res, length, order, direction, coef_compress, coefs.
	return 2 + 1 + 6 + 5 + 1 + 1 + tnsCoefBits*f.order
}

func (f *tnsFilter) write(w *bitWriter) {
	w.put(1, 2) // n_filt
	w.put(1, 1) // coef_res: 4 bits
	w.put(uint32(f.length), 6)
	w.put(uint32(f.order), 5)
	w.put(0, 1) // direction: upwards
	w.put(0, 1) // coef_compress
	for _, c := range f.coef[:f.order] {
		w.put(uint32(c)&(1<<tnsCoefBits-1), tnsCoefBits)
	}
}

// tns decides and applies the channel's filter over spec[lo:hi]: the
// Levinson-Durbin predictor of the lines' autocorrelation, its reflection
// coefficients quantized as the decoder reads them, and the prediction
// error filter e[n] = x[n] + Σ a_j·x[n−j] rebuilt from them, which the
// decoder's y[n] = e[n] − Σ a_j·y[n−j] inverts exactly. length is the
// length field that makes the decoder start at lo.
func (c *channel) tns(lo, hi, length int, minGain float64) {
	f := &c.tnsF
	f.on = false
	x := c.spec[lo:hi]
	if len(x) <= 2*tnsOrder {
		return
	}
	var r [tnsOrder + 1]float64
	for lag := range r {
		var acc float64
		for i := lag; i < len(x); i++ {
			acc += x[i] * x[i-lag]
		}
		r[lag] = acc
	}
	if r[0] == 0 {
		return
	}
	// A Gaussian lag window smooths the temporal envelope the filter
	// follows (and bounds its gain): an impulse's spectrum is predictable
	// almost exactly, and a filter that sharp amplifies the quantization
	// noise of the residual as much as it shrinks the signal.
	for lag := 1; lag <= tnsOrder; lag++ {
		r[lag] *= tnsLagWindow[lag]
	}
	r[0] *= 1 + 1e-9
	var a, prev [tnsOrder + 1]float64
	var k [tnsOrder]float64
	a[0] = 1
	e := r[0]
	for m := 1; m <= tnsOrder; m++ {
		acc := r[m]
		for i := 1; i < m; i++ {
			acc += a[i] * r[m-i]
		}
		km := -acc / e
		prev = a
		for i := 1; i < m; i++ {
			a[i] = prev[i] + km*prev[m-i]
		}
		a[m] = km
		k[m-1] = km
		e *= 1 - km*km
		if e <= 0 {
			return
		}
	}
	if r[0]/e < minGain {
		return
	}
	order := 0
	for i, km := range k {
		s := 0
		if km < 0 {
			s = 1
		}
		idx := int(math.Round(math.Asin(max(min(km, 1), -1)) * tnsIQ[s]))
		f.coef[i] = int8(min(max(idx, -(1<<(tnsCoefBits-1))), 1<<(tnsCoefBits-1)-1))
		if f.coef[i] != 0 {
			order = i + 1
		}
	}
	if order == 0 {
		return
	}
	// The decoder's coefficients.
	var q [tnsOrder + 1]float64
	q[0] = 1
	for m := 1; m <= order; m++ {
		idx := float64(f.coef[m-1])
		s := 0
		if idx < 0 {
			s = 1
		}
		km := math.Sin(idx / tnsIQ[s])
		prev = q
		for i := 1; i < m; i++ {
			q[i] = prev[i] + km*prev[m-i]
		}
		q[m] = km
	}
	// Filter from the top down so that x[n−j] are still the inputs.
	var after float64
	for n := len(x) - 1; n >= 0; n-- {
		acc := x[n]
		for j := 1; j <= order && j <= n; j++ {
			acc += q[j] * x[n-j]
		}
		x[n] = acc
		after += acc * acc
	}
	f.on, f.order, f.length = true, order, length
	f.lo, f.hi = lo, hi
	// The decoder's synthesis filter raises the residual's quantization
	// noise by about the prediction gain: the noise model (which sees
	// the residual) must allow correspondingly less.
	f.logGain = max(log2Fast(r[0]/(1+1e-9)/max(after, 1e-30)), 0)
}

// tnsLagWindow[lag] is exp(−½(0.4·lag)²).
var tnsLagWindow = func() [tnsOrder + 1]float64 {
	var w [tnsOrder + 1]float64
	for i := range w {
		w[i] = math.Exp(-0.5 * (0.4 * float64(i)) * (0.4 * float64(i)))
	}
	return w
}()
