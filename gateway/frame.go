package gateway

import (
	"sync"
	"sync/atomic"
	"time"
)

// frame is one muxed FLV tag body shared by every target of a stream. The
// receive goroutine fills it once; each target's queue holds a reference and
// releases it when written or dropped, so fan-out copies nothing.
type frame struct {
	refs     atomic.Int32
	tagType  uint8
	ts       uint32 // stream time in ms
	keyframe bool
	// metaRefresh (script frames): write the merged onMetaData now.
	metaRefresh bool
	params      *paramSet    // video: the SPS/PPS in force for this frame
	ahdr        *audioHeader // audio: the sequence header this frame needs
	recvAt      time.Time    // when its last RTP packet arrived, for latency stats
	body        []byte
	pool        *framePool
}

func (f *frame) retain() { f.refs.Add(1) }

func (f *frame) release() {
	if f.refs.Add(-1) == 0 {
		f.pool.put(f)
	}
}

// framePool recycles frames and their body buffers so the steady-state
// per-frame path allocates nothing.
type framePool struct{ p sync.Pool }

func newFramePool() *framePool {
	fp := &framePool{}
	fp.p.New = func() any { return &frame{pool: fp, body: make([]byte, 0, 64<<10)} }
	return fp
}

// get returns a frame holding one reference, owned by the caller.
func (fp *framePool) get() *frame {
	f := fp.p.Get().(*frame)
	f.refs.Store(1)
	f.body = f.body[:0]
	f.params = nil
	f.ahdr = nil
	f.keyframe = false
	f.metaRefresh = false
	return f
}

func (fp *framePool) put(f *frame) {
	// Keep unusually large buffers (a huge IDR) from pinning memory forever.
	if cap(f.body) > 4<<20 {
		f.body = make([]byte, 0, 64<<10)
	}
	f.params = nil
	f.ahdr = nil
	fp.p.Put(f)
}
