package media

import (
	"testing"
	"time"
)

// TestFramePoolSizes: video frames come with a 64 KiB body, audio and data
// frames with a small one; a returned frame that grew past its kind's
// bound is not kept with that buffer, and every frame comes out cleared.
func TestFramePoolSizes(t *testing.T) {
	fp := NewFramePool()
	for range 3 {
		v := fp.Get()
		if c := cap(v.Body); c < bigBody || c > maxKeptBody {
			t.Fatalf("video frame body cap %d, want %d..%d", c, bigBody, maxKeptBody)
		}
		v.Body = append(v.Body, make([]byte, maxKeptBody+1)...)
		v.TS, v.DurationMs, v.Keyframe, v.RecvAt = 9, 20, true, time.Now()
		v.Release()

		a := fp.GetSmall()
		if c := cap(a.Body); c < smallBody || c > maxKeptSmall {
			t.Fatalf("audio frame body cap %d, want %d..%d", c, smallBody, maxKeptSmall)
		}
		if a.TS != 0 || a.DurationMs != 0 || a.Keyframe || !a.RecvAt.IsZero() || len(a.Body) != 0 {
			t.Fatalf("frame not cleared: %+v", a)
		}
		a.Body = append(a.Body, make([]byte, maxKeptSmall+1)...)
		a.TS, a.DurationMs = 7, 20
		a.Release()
	}
	v := fp.Get()
	if c := cap(v.Body); c > maxKeptBody {
		t.Errorf("a video frame kept a %d-byte body", c)
	}
	if v.TS != 0 || v.DurationMs != 0 || v.Keyframe {
		t.Errorf("video frame not cleared: %+v", v)
	}
	a := fp.GetSmall()
	if c := cap(a.Body); c > maxKeptSmall {
		t.Errorf("an audio frame kept a %d-byte body", c)
	}
	if !a.small || v.small {
		t.Errorf("frames of the wrong kind: small %v, video small %v", a.small, v.small)
	}
}
