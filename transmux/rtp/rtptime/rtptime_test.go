package rtptime

import (
	"math"
	"slices"
	"testing"
)

func TestUnwrapForwardWrap(t *testing.T) {
	var u Unwrapper
	start := uint32(math.MaxUint32 - 3000)
	if got := u.Unwrap(start); got != int64(start) {
		t.Fatalf("first = %d, want %d", got, start)
	}
	// Crosses 2^32.
	if got, want := u.Unwrap(start+6000), int64(start)+6000; got != want {
		t.Fatalf("after wrap = %d, want %d", got, want)
	}
	// A whole second wrap keeps counting up.
	ts := start + 6000
	want := int64(start) + 6000
	for i := 0; i < 3*(1<<32)/(1<<30); i++ {
		ts += 1 << 30
		want += 1 << 30
		if got := u.Unwrap(ts); got != want {
			t.Fatalf("step %d = %d, want %d", i, got, want)
		}
	}
}

func TestUnwrapBackward(t *testing.T) {
	var u Unwrapper
	u.Unwrap(10)
	// Small reorder backwards across the wrap point goes negative.
	if got := u.Unwrap(math.MaxUint32 - 2999); got != -3000 {
		t.Fatalf("backward across wrap = %d, want -3000", got)
	}
	if got := u.Unwrap(3010); got != 3010 {
		t.Fatalf("forward again = %d, want 3010", got)
	}
	if got := u.Unwrap(13); got != 13 {
		t.Fatalf("small backward = %d, want 13", got)
	}
}

func TestUnwrapReset(t *testing.T) {
	var u Unwrapper
	u.Unwrap(100)
	u.Unwrap(math.MaxUint32) // -> -1 relative
	u.Reset()
	if got := u.Unwrap(math.MaxUint32); got != math.MaxUint32 {
		t.Fatalf("after reset = %d", got)
	}
}

func TestTimeline30fps(t *testing.T) {
	tl := NewTimeline(90000)
	base := uint32(math.MaxUint32 - 4000) // wraps on the 2nd frame
	for i := 0; i < 1000; i++ {
		got := tl.Millis(base + uint32(i)*3000)
		exact := float64(i) * 1000 / 30
		if math.Abs(float64(got)-exact) > 0.5+1e-9 {
			t.Fatalf("frame %d: %d ms, exact %.3f", i, got, exact)
		}
	}
	tl = NewTimeline(90000)
	var got []uint32
	for i := 0; i < 4; i++ {
		got = append(got, tl.Millis(uint32(i)*3000))
	}
	if want := []uint32{0, 33, 67, 100}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestTimelineAudio48k(t *testing.T) {
	tl := NewTimeline(48000)
	for i := 0; i < 100; i++ {
		if got, want := tl.Millis(123+uint32(i)*960), uint32(i*20); got != want {
			t.Fatalf("packet %d: %d, want %d", i, got, want)
		}
	}
}

func TestTimelineNeverDecreases(t *testing.T) {
	tl := NewTimeline(90000)
	steps := []uint32{1000, 4000, 7000, 5500, 2000, 10000, 9000, 13000}
	var last uint32
	for i, ts := range steps {
		got := tl.Millis(ts)
		if got < last {
			t.Fatalf("step %d: %d < %d", i, got, last)
		}
		last = got
	}
	if tl.Clamped() != 3 {
		t.Fatalf("clamped = %d, want 3", tl.Clamped())
	}
	if last != 133 { // (13000-1000)/90
		t.Fatalf("last = %d, want 133", last)
	}
}

func TestTimelineBeforeFirstSample(t *testing.T) {
	tl := NewTimeline(90000)
	tl.Millis(9000)
	if got := tl.Millis(6000); got != 0 {
		t.Fatalf("got %d, want 0 (clamped)", got)
	}
}

func TestTimelineFLVWrap(t *testing.T) {
	tl := NewTimeline(1000) // 1 tick = 1 ms, easy to cross 2^32 ms
	var ts uint32
	var want uint64
	tl.Millis(ts)
	for i := 0; i < 5; i++ { // 5 * 2^30 ms > 2^32 ms
		ts += 1 << 30
		want += 1 << 30
		if got := tl.Millis(ts); got != uint32(want) {
			t.Fatalf("step %d: %d, want %d", i, got, uint32(want))
		}
	}
	if tl.Clamped() != 0 {
		t.Fatalf("clamped = %d across FLV wrap", tl.Clamped())
	}
}

func TestTimelineRebase(t *testing.T) {
	tl := NewTimeline(90000)
	tl.Millis(0)
	tl.Millis(90000) // 1000 ms
	tl.Rebase()
	// Publisher restarted with an unrelated timestamp.
	if got := tl.Millis(3_000_000_000); got != 1000 {
		t.Fatalf("after rebase = %d, want 1000", got)
	}
	if got := tl.Millis(3_000_000_000 + 9000); got != 1100 {
		t.Fatalf("after rebase +100ms = %d, want 1100", got)
	}
}

func TestTimelineZeroClockRate(t *testing.T) {
	tl := NewTimeline(0)
	tl.Millis(0)
	if got := tl.Millis(90000); got != 1000 {
		t.Fatalf("got %d, want 1000", got)
	}
}

func TestTimelineNoAllocs(t *testing.T) {
	tl := NewTimeline(90000)
	var ts uint32
	allocs := testing.AllocsPerRun(1000, func() {
		ts += 3000
		tl.Millis(ts)
	})
	if allocs != 0 {
		t.Fatalf("allocs = %v, want 0", allocs)
	}
}

func BenchmarkTimelineMillis(b *testing.B) {
	tl := NewTimeline(90000)
	b.ReportAllocs()
	var ts uint32
	for i := 0; i < b.N; i++ {
		ts += 3000
		tl.Millis(ts)
	}
}
