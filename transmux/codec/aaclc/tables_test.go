package aaclc

import (
	"fmt"
	"testing"
)

// TestHuffmanTables checks each codebook's size, that no codeword is a
// prefix of another, and that the code is complete (Kraft sum exactly 1),
// which a transcription error in a length or a code would almost surely
// break.
func TestHuffmanTables(t *testing.T) {
	books := []struct {
		name string
		code []uint32
		size int
	}{{"scalefactor", hcbScalefactor[:], 121}}
	sizes := [numHCB]int{0, 81, 81, 81, 81, 81, 81, 64, 64, 169, 169, 289}
	for cb := 1; cb < numHCB; cb++ {
		books = append(books, struct {
			name string
			code []uint32
			size int
		}{fmt.Sprintf("spectrum %d", cb), hcbs[cb], sizes[cb]})
	}
	for _, bk := range books {
		if len(bk.code) != bk.size {
			t.Errorf("%s: %d entries, want %d", bk.name, len(bk.code), bk.size)
		}
		var kraft float64
		for i, a := range bk.code {
			la, ca := a>>24, a&0xffffff
			if la == 0 || la > 19 || ca>>la != 0 {
				t.Errorf("%s[%d]: bad codeword %#x", bk.name, i, a)
				continue
			}
			kraft += 1 / float64(uint64(1)<<la)
			for j, b := range bk.code {
				lb, cbits := b>>24, b&0xffffff
				if i != j && lb >= la && cbits>>(lb-la) == ca {
					t.Errorf("%s: codeword %d is a prefix of %d", bk.name, i, j)
				}
			}
		}
		if kraft != 1 {
			t.Errorf("%s: Kraft sum %v, want 1", bk.name, kraft)
		}
	}
}

func TestScalefactorBands(t *testing.T) {
	for name, swb := range map[string][]uint16{"48": swbOffsetLong48[:], "32": swbOffsetLong32[:]} {
		if swb[0] != 0 || swb[len(swb)-1] != FrameSamples {
			t.Errorf("%s kHz: bands span %d..%d", name, swb[0], swb[len(swb)-1])
		}
		for b := 1; b < len(swb); b++ {
			if w := swb[b] - swb[b-1]; w == 0 || w%4 != 0 {
				t.Errorf("%s kHz: band %d is %d lines wide (must be a positive multiple of 4)", name, b-1, w)
			}
		}
	}
	if n := len(swbOffsetLong48) - 1; n != 49 {
		t.Errorf("48 kHz: %d bands, want 49", n)
	}
	if n := len(swbOffsetLong32) - 1; n != 51 {
		t.Errorf("32 kHz: %d bands, want 51", n)
	}
}
