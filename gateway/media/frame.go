// Package media is what flows from the receive pipelines (video, audio) to
// the outputs (rtmpout): muxed FLV tag bodies in pooled, reference-counted
// frames, and the immutable codec configurations they refer to.
package media

import (
	"sync"
	"sync/atomic"
	"time"
)

// Frame is one muxed FLV tag body shared by every target of a stream. The
// producing goroutine fills it once; each target's queue holds a reference
// and releases it when written or dropped, so fan-out copies nothing.
type Frame struct {
	refs     atomic.Int32
	TagType  uint8  // flv.TagVideo, flv.TagAudio or flv.TagScript
	TS       uint32 // stream time in ms
	Keyframe bool
	// MetaRefresh (script frames): write the merged onMetaData now.
	MetaRefresh bool
	Params      *ParamSet    // video: the SPS/PPS in force for this frame
	AudioHeader *AudioHeader // audio: the sequence header this frame needs
	RecvAt      time.Time    // when its last RTP packet arrived, for latency stats
	// DurationMs is how long the frame lasts when its producer knows (an
	// Opus packet's samples, rounded down), 0 when not: a target's
	// interleaver then knows how far the audio has come without waiting
	// for the next packet.
	DurationMs uint32
	Body       []byte
	pool       *FramePool
	small      bool // from the pool's small frames (GetSmall)
}

// Retain adds a reference: a queue that holds the frame.
func (f *Frame) Retain() { f.refs.Add(1) }

// Release drops a reference; the last one returns the frame to its pool.
func (f *Frame) Release() {
	if f.refs.Add(-1) == 0 {
		f.pool.put(f)
	}
}

// FramePool recycles frames and their body buffers so the steady-state
// per-frame path allocates nothing. One pool serves a whole gateway.
//
// It keeps two sizes: video frames with 64 KiB bodies (a P-frame of 2.5
// Mbit/s video is ~10 KiB, an IDR a few times that), and small frames for
// audio and data tags (an Opus or AAC frame is under 2 KiB). With one size
// every audio frame in a target's queue and interleaving ring pinned 64
// KiB: at 50 audio frames a second that was most of a stream's memory.
type FramePool struct{ big, small sync.Pool }

const (
	bigBody   = 64 << 10
	smallBody = 2 << 10
	// maxKeptBody is the largest body a returned big frame keeps (an
	// unusually large IDR must not pin memory forever); maxKeptSmall the
	// largest a small one keeps.
	maxKeptBody  = 4 << 20
	maxKeptSmall = 16 << 10
)

// NewFramePool returns an empty pool.
func NewFramePool() *FramePool {
	fp := &FramePool{}
	fp.big.New = func() any { return &Frame{pool: fp, Body: make([]byte, 0, bigBody)} }
	fp.small.New = func() any { return &Frame{pool: fp, small: true, Body: make([]byte, 0, smallBody)} }
	return fp
}

// Get returns a cleared frame for video, holding one reference, owned by
// the caller.
func (fp *FramePool) Get() *Frame { return resetFrame(fp.big.Get().(*Frame)) }

// GetSmall is Get for a frame whose body is a few KiB at most (audio, data
// tags); a larger body still fits (it grows).
func (fp *FramePool) GetSmall() *Frame { return resetFrame(fp.small.Get().(*Frame)) }

func resetFrame(f *Frame) *Frame {
	f.refs.Store(1)
	f.Body = f.Body[:0]
	f.TS = 0
	f.TagType = 0
	f.Params = nil
	f.AudioHeader = nil
	f.Keyframe = false
	f.MetaRefresh = false
	f.RecvAt = time.Time{}
	f.DurationMs = 0
	return f
}

func (fp *FramePool) put(f *Frame) {
	f.Params = nil
	f.AudioHeader = nil
	if f.small {
		if cap(f.Body) > maxKeptSmall {
			f.Body = make([]byte, 0, smallBody)
		}
		fp.small.Put(f)
		return
	}
	if cap(f.Body) > maxKeptBody {
		f.Body = make([]byte, 0, bigBody)
	}
	fp.big.Put(f)
}
