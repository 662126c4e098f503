package aaclc

import "encoding/binary"

// bitWriter appends an MSB-first bit stream to a byte slice. Bits gather in
// a 64-bit accumulator and go out 32 at a time, so writing a field mostly
// costs a shift and an or; the slice only grows when the caller's dst is
// short.
type bitWriter struct {
	buf  []byte
	acc  uint64 // pending bits, right-aligned (higher bits are stale)
	nacc uint   // number of pending bits, < 32 between calls
}

func (w *bitWriter) reset(dst []byte) {
	w.buf = dst
	w.acc = 0
	w.nacc = 0
}

// put writes the n (≤ 32) low bits of v.
func (w *bitWriter) put(v uint32, n uint) {
	w.acc = w.acc<<n | uint64(v)&(1<<n-1)
	w.nacc += n
	if w.nacc >= 32 {
		w.nacc -= 32
		w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(w.acc>>w.nacc))
	}
}

// putCode writes a packed Huffman codeword (length<<24 | code).
func (w *bitWriter) putCode(c uint32) {
	w.put(c&0xffffff, uint(c>>24))
}

// align pads with zero bits to the next byte boundary and flushes.
func (w *bitWriter) align() {
	if r := w.nacc % 8; r != 0 {
		w.put(0, 8-r)
	}
	for w.nacc > 0 {
		w.nacc -= 8
		w.buf = append(w.buf, byte(w.acc>>w.nacc))
	}
}
