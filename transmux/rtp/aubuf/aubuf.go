// Package aubuf is the buffer a depacketizer assembles a frame in. A
// buffer grows to the largest frame it has held and keeps that memory, so
// every video track of a gateway would pin a keyframe's worth (128 KiB at
// 2.5 Mbit/s) for the few milliseconds a keyframe is assembled every two
// seconds. With a Pool, a Buf keeps at most Keep bytes of its own and
// borrows a larger buffer from the pool only while a frame beyond that is
// built: a gateway's tracks then share a handful of keyframe buffers.
package aubuf

import "sync"

// Keep is the most a Buf with a pool keeps of its own: above a P-frame of
// 2.5 Mbit/s, 30 fps video (~10 KiB), below its keyframes.
const Keep = 32 << 10

// Pool lends large buffers to the Bufs of many tracks. Safe for concurrent
// use. The garbage collector may empty it (sync.Pool), so a quiet gateway
// gives the memory back.
type Pool struct{ p sync.Pool }

// NewPool returns an empty pool.
func NewPool() *Pool { return &Pool{} }

// lent is what the pool holds: a pointer, so that putting it back does not
// allocate.
type lent struct{ b []byte }

func (p *Pool) get() *lent {
	if l, ok := p.p.Get().(*lent); ok {
		return l
	}
	return &lent{}
}

func (p *Pool) put(l *lent) {
	l.b = l.b[:0]
	p.p.Put(l)
}

// Buf is a growing byte buffer. The zero value, and a Buf used with a nil
// pool, keeps all it grows to.
type Buf struct {
	// B is the bytes assembled so far; it moves when the buffer grows.
	B []byte
	// own is the buffer's own memory while B is borrowed.
	own  []byte
	lent *lent
}

// Append appends b. With a pool, growing past Keep moves the bytes into a
// buffer borrowed from it.
func (x *Buf) Append(pool *Pool, b []byte) {
	n := len(x.B) + len(b)
	if pool != nil && x.lent == nil && n > cap(x.B) {
		if n > Keep {
			l := pool.get()
			x.own, x.lent = x.B[:0], l
			x.B = append(l.b[:0], x.B...)
		} else {
			// Grown by hand: append's rounding would go past Keep.
			own := make([]byte, len(x.B), min(max(2*cap(x.B), n, 1024), Keep))
			copy(own, x.B)
			x.B = own
		}
	}
	x.B = append(x.B, b...)
	if x.lent != nil {
		x.lent.b = x.B
	}
}

// AppendByte appends c.
func (x *Buf) AppendByte(pool *Pool, c byte) {
	if len(x.B) < cap(x.B) {
		x.B = append(x.B, c)
		return
	}
	x.Append(pool, []byte{c})
}

// Reset empties the buffer and returns what it borrowed to pool (the one
// it was borrowed from). The bytes of B are not to be used after it.
func (x *Buf) Reset(pool *Pool) {
	if x.lent != nil {
		pool.put(x.lent)
		x.B, x.own, x.lent = x.own, nil, nil
	}
	x.B = x.B[:0]
}

// Borrowed reports whether B is a pool's buffer now.
func (x *Buf) Borrowed() bool { return x.lent != nil }
