package aaclc

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestMDCTMatchesDefinition compares the fast transform with the
// standard's O(N²) formula on random input.
func TestMDCTMatchesDefinition(t *testing.T) {
	m := newMDCT()
	rng := rand.New(rand.NewPCG(1, 2))
	var prev, cur, got [FrameSamples]float64
	for i := range prev {
		prev[i] = rng.Float64()*65536 - 32768
		cur[i] = rng.Float64()*65536 - 32768
	}
	m.transform(&prev, &cur, &got)
	const n0 = (windowLen/2 + 1) / 2.0
	maxErr, maxVal := 0.0, 0.0
	for k := range FrameSamples {
		var want float64
		for n := range windowLen {
			x := prev[n%FrameSamples]
			if n >= FrameSamples {
				x = cur[n-FrameSamples]
			}
			want += m.window[n] * x * math.Cos(2*math.Pi/windowLen*(float64(n)+n0)*(float64(k)+0.5))
		}
		want *= 2
		maxErr = max(maxErr, math.Abs(want-got[k]))
		maxVal = max(maxVal, math.Abs(want))
	}
	if maxErr > 1e-9*maxVal {
		t.Fatalf("max error %g (peak %g)", maxErr, maxVal)
	}
}
