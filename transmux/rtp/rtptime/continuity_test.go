package rtptime

import (
	"testing"
	"time"
)

// feed maps 30 fps frames whose RTP timestamps are ts(i), arriving on time.
func feedFrames(c *Continuity, n int, ts func(i int) uint32, arr func(i int) int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = c.Map(ts(i), arr(i))
	}
	return out
}

func onTime(i int) int64 { return 1e18 + int64(i)*int64(time.Second)/30 }

// TestContinuityRebasesJumps: a source whose timestamps jump back to 0
// (a looping file) or ahead by an hour, its frames arriving at their
// pace, continues one frame after the frame before, on both, and keeps
// going from there; the Offset moves a Sender Report's RTP time with it.
func TestContinuityRebasesJumps(t *testing.T) {
	for _, tc := range []struct {
		name string
		jump func(i int) uint32 // RTP timestamp of frame i ≥ 100
	}{
		{"back to 0", func(i int) uint32 { return uint32((i - 100) * 3000) }},
		{"ahead 1 h", func(i int) uint32 { return 4_000_000_000 + uint32(i*3000) + 3600*90000 }},
		{"ahead, to just before the wrap", func(i int) uint32 { return 4_294_000_000 + uint32((i-100)*3000) }},
	} {
		c := NewContinuity(90000)
		ts := func(i int) uint32 {
			if i < 100 {
				return 4_000_000_000 + uint32(i*3000)
			}
			return tc.jump(i)
		}
		out := feedFrames(c, 300, ts, onTime)
		for i := 1; i < len(out); i++ {
			if d := out[i] - out[i-1]; d != 3000 {
				t.Fatalf("%s: frame %d is %d ticks after the one before, want 3000", tc.name, i, d)
			}
		}
		if c.Jumps() != 1 {
			t.Errorf("%s: %d jumps, want 1", tc.name, c.Jumps())
		}
		// An SR of the new timeline: RTP of frame 200, as the source counts.
		if got := int64(uint32(int64(ts(200)) + c.Offset())); got != out[200]&0xffffffff {
			t.Errorf("%s: SR's RTP time moved to %d, frame 200 is at %d", tc.name, got, out[200]&0xffffffff)
		}
	}
}

// TestContinuityKeepsRealSteps: what is no jump passes unchanged: a pause
// (no frames for 3 s, timestamps ahead by as much), B-frame reordering
// (a frame back by two), the wrap at 2^32, and late arrival bunching.
func TestContinuityKeepsRealSteps(t *testing.T) {
	c := NewContinuity(90000)
	base := uint32(4_294_900_000) // wraps after ~22 frames
	var want []int64
	var got []int64
	for i := 0; i < 200; i++ {
		frame := i
		if i >= 100 {
			frame = i + 90 // a 3 s pause before frame 100
		}
		pts := frame
		if i%3 == 1 && i > 1 {
			pts = frame + 1 // decode order I P B: B-frames go back
		} else if i%3 == 2 && i > 1 {
			pts = frame - 1
		}
		arr := onTime(frame)
		if i%10 < 5 {
			arr += int64(5 * (i % 10) * int(time.Millisecond)) // bunched
		}
		got = append(got, c.Map(base+uint32(pts*3000), arr))
		want = append(want, int64(base)+int64(pts*3000))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("frame %d at %d, want %d (its own RTP time, unwrapped)", i, got[i], want[i])
		}
	}
	if c.Jumps() != 0 || c.Offset() != 0 {
		t.Errorf("%d jumps, offset %d: want none", c.Jumps(), c.Offset())
	}
}

func TestContinuityAllocs(t *testing.T) {
	c := NewContinuity(90000)
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		c.Map(uint32(i*3000), onTime(i))
		i++
	}); n != 0 {
		t.Errorf("Map allocates %v times", n)
	}
}
