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
	Body        []byte
	pool        *FramePool
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
type FramePool struct{ p sync.Pool }

// NewFramePool returns an empty pool.
func NewFramePool() *FramePool {
	fp := &FramePool{}
	fp.p.New = func() any { return &Frame{pool: fp, Body: make([]byte, 0, 64<<10)} }
	return fp
}

// Get returns a cleared frame holding one reference, owned by the caller.
func (fp *FramePool) Get() *Frame {
	f := fp.p.Get().(*Frame)
	f.refs.Store(1)
	f.Body = f.Body[:0]
	f.TS = 0
	f.TagType = 0
	f.Params = nil
	f.AudioHeader = nil
	f.Keyframe = false
	f.MetaRefresh = false
	f.RecvAt = time.Time{}
	return f
}

func (fp *FramePool) put(f *Frame) {
	// Keep unusually large buffers (a huge IDR) from pinning memory forever.
	if cap(f.Body) > 4<<20 {
		f.Body = make([]byte, 0, 64<<10)
	}
	f.Params = nil
	f.AudioHeader = nil
	fp.p.Put(f)
}
