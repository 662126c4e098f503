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
	m.transform(&m.window, &prev, &cur, &got)
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

// TestShortMDCTMatchesDefinition checks the eight short transforms against
// the standard's formula (N = 256) at their offsets 448 + 128·w in the
// block, and the start and stop windows against the power-complementary
// condition that makes them cancel aliasing with their neighbours.
func TestShortMDCTMatchesDefinition(t *testing.T) {
	m := newMDCT()
	rng := rand.New(rand.NewPCG(3, 4))
	var prev, cur, got [FrameSamples]float64
	for i := range prev {
		prev[i] = rng.Float64()*65536 - 32768
		cur[i] = rng.Float64()*65536 - 32768
	}
	m.transformShort(&prev, &cur, &got, shortLines)
	const n0 = (shortLen/2 + 1) / 2.0
	maxErr, maxVal := 0.0, 0.0
	for w := range shortWindows {
		for k := range shortLines {
			var want float64
			for n := range shortLen {
				i := shortStart + w*shortLines + n
				x := prev[i%FrameSamples]
				if i >= FrameSamples {
					x = cur[i-FrameSamples]
				}
				want += m.short[n] * x * math.Cos(2*math.Pi/shortLen*(float64(n)+n0)*(float64(k)+0.5))
			}
			want *= 2
			maxErr = max(maxErr, math.Abs(want-got[w*shortLines+k]))
			maxVal = max(maxVal, math.Abs(want))
		}
	}
	if maxErr > 1e-9*maxVal {
		t.Fatalf("max error %g (peak %g)", maxErr, maxVal)
	}
	// Overlap of a start window's right half with the short windows, and
	// of the short windows with a stop window's left half: w² + w'² = 1
	// where they overlap, as Princen-Bradley requires.
	for i := range shortLines {
		a := m.start[FrameSamples+shortStart+i]
		b := m.short[i]
		if d := a*a + b*b - 1; math.Abs(d) > 1e-12 {
			t.Fatalf("start/short overlap at %d: %g", i, d)
		}
		c := m.stop[shortStart+i]
		s := m.short[shortLines+i]
		if d := c*c + s*s - 1; math.Abs(d) > 1e-12 {
			t.Fatalf("short/stop overlap at %d: %g", i, d)
		}
	}
}
