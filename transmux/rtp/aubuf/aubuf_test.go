package aubuf

import (
	"bytes"
	"runtime/debug"
	"testing"
)

func fill(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// appendAll appends p in 1200-byte pieces, as a depacketizer appends RTP
// payloads, and checks the result.
func appendAll(t testing.TB, x *Buf, pool *Pool, p []byte) {
	t.Helper()
	x.AppendByte(pool, p[0])
	for rest := p[1:]; len(rest) > 0; {
		n := min(1200, len(rest))
		x.Append(pool, rest[:n])
		rest = rest[n:]
	}
	if !bytes.Equal(x.B, p) {
		t.Fatalf("assembled %d bytes, not the %d appended", len(x.B), len(p))
	}
}

func TestWithoutPoolKeepsWhatItGrewTo(t *testing.T) {
	var x Buf
	appendAll(t, &x, nil, fill(100000, 1))
	x.Reset(nil)
	if len(x.B) != 0 || cap(x.B) < 100000 || x.Borrowed() {
		t.Fatalf("after reset: len %d cap %d borrowed %v, want an empty buffer of the frame's size", len(x.B), cap(x.B), x.Borrowed())
	}
}

func TestSmallFramesStayInOwnBuffer(t *testing.T) {
	pool := NewPool()
	var x Buf
	for i := range 20 {
		appendAll(t, &x, pool, fill(Keep-100, byte(i)))
		if x.Borrowed() {
			t.Fatalf("frame %d of %d bytes borrowed (Keep %d)", i, Keep-100, Keep)
		}
		x.Reset(pool)
	}
}

func TestLargeFrameBorrowsAndGivesBack(t *testing.T) {
	pool := NewPool()
	var x Buf
	key := fill(150000, 9)
	appendAll(t, &x, pool, key)
	if !x.Borrowed() {
		t.Fatal("a 150000-byte frame did not borrow")
	}
	x.Reset(pool)
	if x.Borrowed() || cap(x.B) > Keep {
		t.Fatalf("after reset: borrowed %v, cap %d; want the own buffer back, at most Keep (%d)", x.Borrowed(), cap(x.B), Keep)
	}
	// The next small frame is assembled in the own buffer again.
	appendAll(t, &x, pool, fill(500, 4))
	if x.Borrowed() {
		t.Fatal("a small frame after the keyframe borrowed")
	}
}

// Tracks whose keyframes do not overlap in time share one keyframe buffer:
// the second track's keyframe is assembled in the memory the first one's
// used, and once warm the whole cycle allocates nothing.
func TestTracksShareKeyframeBuffer(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops what it is given under the race detector")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // the GC empties a sync.Pool
	pool := NewPool()
	var a, b Buf
	key, p := fill(120000, 5), fill(9000, 6)
	appendAll(t, &a, pool, key)
	first := &a.B[0]
	a.Reset(pool)
	appendAll(t, &b, pool, key)
	if &b.B[0] != first {
		t.Fatal("the second track's keyframe did not reuse the buffer the first gave back")
	}
	b.Reset(pool)

	allocs := testing.AllocsPerRun(100, func() {
		for _, x := range []*Buf{&a, &b} {
			appendAll(t, x, pool, key)
			x.Reset(pool)
			appendAll(t, x, pool, p)
			x.Reset(pool)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per keyframe cycle of two tracks, want 0", allocs)
	}
}

func FuzzBuf(f *testing.F) {
	f.Add([]byte{1, 2, 3}, uint16(40000))
	f.Fuzz(func(t *testing.T, seed []byte, size uint16) {
		pool := NewPool()
		var x, y Buf
		for round := range 3 {
			want := fill(int(size)*(round+1)+1, byte(len(seed)))
			copy(want, seed)
			appendAll(t, &x, pool, want)
			appendAll(t, &y, pool, want[:len(want)/2+1])
			if !bytes.Equal(x.B, want) {
				t.Fatal("a buffer changed while another used the pool")
			}
			x.Reset(pool)
			y.Reset(pool)
		}
	})
}
