package aaclc

import "math/bits"

// Spectrum codebooks (ISO/IEC 14496-3 §4.6.3, Table 4.150). Codebooks come
// in pairs sharing dimension, signedness and largest absolute value (LAV);
// 11 is alone and escapes values ≥ 16.
const (
	zeroHCB  = 0
	escHCB   = 11
	numHCB   = 12 // 0 (ZERO_HCB) … 11
	escLAV   = 16 // values ≥ escLAV go to an escape sequence in codebook 11
	maxQuant = 8191
)

// hcbs indexes the spectrum codebooks by number (entry 0 unused).
var hcbs = [numHCB][]uint32{nil, hcb1[:], hcb2[:], hcb3[:], hcb4[:], hcb5[:], hcb6[:], hcb7[:], hcb8[:], hcb9[:], hcb10[:], hcb11[:]}

// codebook pair p covers codebooks 2p+1 and 2p+2 (p 5 is codebook 11 only).
const numPairs = 6

// pairFor returns the smallest pair able to code magnitude max ≥ 1: the
// pairs' largest absolute values are 1, 2, 4, 7, 12 and (with escapes)
// 8191. It is usually the cheapest.
func pairFor(max int32) int {
	switch {
	case max <= 1:
		return 0
	case max <= 2:
		return 1
	case max <= 4:
		return 2
	case max <= 7:
		return 3
	case max <= 12:
		return 4
	}
	return 5
}

// pairBits[p][idx] holds, for the codeword index idx, the total bits
// (codeword plus sign bits) in codebook 2p+1 in the low 16 bits and in
// codebook 2p+2 in the high 16 bits, so one lookup prices both codebooks.
// Escape sequences of codebook 11 are counted separately.
var pairBits = buildPairBits()

func buildPairBits() [numPairs][]uint32 {
	var t [numPairs][]uint32
	for p := range numPairs {
		a := 2*p + 1
		t[p] = make([]uint32, len(hcbs[a]))
		for idx := range hcbs[a] {
			signs := uint32(0)
			if unsignedHCB(a) {
				signs = uint32(nonzeroInIndex(a, idx))
			}
			v := hcbs[a][idx]>>24 + signs
			if p < numPairs-1 {
				v |= (hcbs[a+1][idx]>>24 + signs) << 16
			}
			t[p][idx] = v
		}
	}
	return t
}

func unsignedHCB(cb int) bool { return cb == 3 || cb == 4 || cb >= 7 }

// hcbDim is the number of values one codeword of codebook cb carries.
func hcbDim(cb int) int {
	if cb <= 4 {
		return 4
	}
	return 2
}

// hcbMod is the radix of the codeword index of an unsigned codebook.
func hcbMod(cb int) int {
	switch cb {
	case 3, 4:
		return 3
	case 7, 8:
		return 8
	case 9, 10:
		return 13
	}
	return 17
}

// nonzeroInIndex counts the non-zero values an unsigned codeword carries.
func nonzeroInIndex(cb, idx int) int {
	n, mod := 0, hcbMod(cb)
	for range hcbDim(cb) {
		if idx%mod != 0 {
			n++
		}
		idx /= mod
	}
	return n
}

// zeroCodeBits is the codeword length of an all-zero tuple per codebook, the
// cost per tuple of coding a silent band with a non-zero codebook.
var zeroCodeBits = func() [numHCB]int {
	var z [numHCB]int
	for cb := 1; cb < numHCB; cb++ {
		z[cb] = int(hcbs[cb][zeroIndex(cb)] >> 24)
	}
	return z
}()

func zeroIndex(cb int) int {
	switch cb {
	case 1, 2:
		return 40 // (1,1,1,1) in base 3
	case 5, 6:
		return 40 // (4,4) in base 9
	}
	return 0
}

// escapeBits is the length of the escape sequence for |v| ≥ 16: N−4 ones,
// a zero and N bits, N = ⌊log2 v⌋.
func escapeBits(v int32) int {
	n := bits.Len32(uint32(v)) - 1
	return 2*n - 3
}

// pairCost returns the bits of coding q (one band) in the two codebooks of
// pair p; for pair 5 the second result is meaningless.
func pairCost(q []int32, p int) (int, int) {
	var acc uint32
	extra := 0
	t := pairBits[p]
	switch p {
	case 0:
		for i := 0; i+3 < len(q); i += 4 {
			acc += t[27*(q[i]+1)+9*(q[i+1]+1)+3*(q[i+2]+1)+q[i+3]+1]
		}
	case 1:
		for i := 0; i+3 < len(q); i += 4 {
			acc += t[27*abs32(q[i])+9*abs32(q[i+1])+3*abs32(q[i+2])+abs32(q[i+3])]
		}
	case 2:
		for i := 0; i+1 < len(q); i += 2 {
			acc += t[9*(q[i]+4)+q[i+1]+4]
		}
	case 3:
		for i := 0; i+1 < len(q); i += 2 {
			acc += t[8*abs32(q[i])+abs32(q[i+1])]
		}
	case 4:
		for i := 0; i+1 < len(q); i += 2 {
			acc += t[13*abs32(q[i])+abs32(q[i+1])]
		}
	default:
		// Codebook 11 alone: accumulate in 32 bits without a packed half.
		for i := 0; i+1 < len(q); i += 2 {
			a, b := abs32(q[i]), abs32(q[i+1])
			if a >= escLAV {
				extra += escapeBits(a)
				a = escLAV
			}
			if b >= escLAV {
				extra += escapeBits(b)
				b = escLAV
			}
			extra += int(t[17*a+b])
		}
		return extra, 0
	}
	return int(acc & 0xffff), int(acc >> 16)
}

// abs32 is branchless: signs of spectral lines are unpredictable.
func abs32(v int32) int32 {
	m := v >> 31
	return (v ^ m) - m
}

// writeBand writes the spectral data of one band with codebook cb ≠ 0.
func writeBand(w *bitWriter, q []int32, cb int) {
	t := hcbs[cb]
	switch cb {
	case 1, 2:
		for i := 0; i+3 < len(q); i += 4 {
			w.putCode(t[27*(q[i]+1)+9*(q[i+1]+1)+3*(q[i+2]+1)+q[i+3]+1])
		}
	case 5, 6:
		for i := 0; i+1 < len(q); i += 2 {
			w.putCode(t[9*(q[i]+4)+q[i+1]+4])
		}
	case 3, 4:
		for i := 0; i+3 < len(q); i += 4 {
			g := q[i : i+4]
			w.putCode(t[27*abs32(g[0])+9*abs32(g[1])+3*abs32(g[2])+abs32(g[3])])
			putSigns(w, g)
		}
	case escHCB:
		for i := 0; i+1 < len(q); i += 2 {
			g := q[i : i+2]
			a, b := min(abs32(g[0]), escLAV), min(abs32(g[1]), escLAV)
			w.putCode(t[17*a+b])
			putSigns(w, g)
			putEscape(w, g[0])
			putEscape(w, g[1])
		}
	default: // 7 … 10
		mod := int32(hcbMod(cb))
		for i := 0; i+1 < len(q); i += 2 {
			g := q[i : i+2]
			w.putCode(t[mod*abs32(g[0])+abs32(g[1])])
			putSigns(w, g)
		}
	}
}

// putSigns writes one sign bit (1 = negative) per non-zero value.
func putSigns(w *bitWriter, g []int32) {
	for _, v := range g {
		if v != 0 {
			w.put(uint32(v)>>31, 1)
		}
	}
}

func putEscape(w *bitWriter, v int32) {
	v = abs32(v)
	if v < escLAV {
		return
	}
	n := uint(bits.Len32(uint32(v)) - 1)
	w.put(1<<(n-4)-1, n-4)
	w.put(0, 1)
	w.put(uint32(v)-1<<n, n)
}

// writeZeros writes width zero lines in codebook cb ≠ 0.
func writeZeros(w *bitWriter, cb, width int) {
	code := hcbs[cb][zeroIndex(cb)]
	for range width / hcbDim(cb) {
		w.putCode(code)
	}
}
