package aacenc

import (
	"encoding/binary"
	"sync"
)

// ring is the PCM queue between Write (the caller's real-time path) and the
// goroutine feeding ffmpeg. Writes never block: when the ring is full the
// write is counted as lost instead.
type ring struct {
	mu     sync.Mutex
	buf    []int16
	head   int // next value to read
	n      int // values queued
	lost   int // values dropped since the last read
	closed bool
	ready  chan struct{} // signalled (non-blocking) on every write and close
}

func newRing(size int) *ring {
	return &ring{buf: make([]int16, size), ready: make(chan struct{}, 1)}
}

func (r *ring) signal() {
	select {
	case r.ready <- struct{}{}:
	default:
	}
}

// write queues pcm, or counts it as lost when it does not fit. It returns
// false once the ring is closed.
func (r *ring) write(pcm []int16) bool {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	if len(pcm) > len(r.buf)-r.n {
		r.lost += len(pcm)
	} else {
		tail := (r.head + r.n) % len(r.buf)
		c := copy(r.buf[tail:], pcm)
		copy(r.buf, pcm[c:])
		r.n += len(pcm)
	}
	r.mu.Unlock()
	r.signal()
	return true
}

// read moves queued samples into dst as s16le bytes (whole stereo samples
// only). It reports the values lost since the last read (and then discards
// what is queued, since the process will be replaced), and ok=false when the
// ring is closed and empty.
func (r *ring) read(dst []byte) (n, lost int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lost > 0 {
		lost = r.lost + r.n
		r.lost, r.head, r.n = 0, 0, 0
		return 0, lost, true
	}
	count := min(r.n, len(dst)/2)
	count -= count % Channels
	for i := range count {
		binary.LittleEndian.PutUint16(dst[2*i:], uint16(r.buf[(r.head+i)%len(r.buf)]))
	}
	r.head = (r.head + count) % len(r.buf)
	r.n -= count
	return 2 * count, 0, r.n > 0 || !r.closed
}

// discard drops everything queued and lost, returning the number of values.
func (r *ring) discard() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := int64(r.n + r.lost)
	r.head, r.n, r.lost = 0, 0, 0
	return d
}

func (r *ring) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.signal()
}
