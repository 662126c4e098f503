package rtmppush

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
)

// spillConn is the connection under the session (under TLS for rtmps). In
// non-blocking mode a write takes what the socket's send buffer takes at
// once and keeps the rest, in order, for the next blocking write or drain:
// a media goroutine can then write to the ingest without ever waiting on
// it (Publisher.SetNonBlocking). In blocking mode it writes what was kept
// first.
type spillConn struct {
	net.Conn
	rc          syscall.RawConn // nil: the connection cannot write without blocking
	nonBlocking atomic.Bool

	mu    sync.Mutex // TLS's close_notify may write beside the publisher
	spill []byte
	// tryWrite's callback and its arguments: a closure per write would
	// allocate.
	try    func(fd uintptr) bool
	tryBuf []byte
	tryN   int
	tryErr error
}

// spillKeep is the largest spill buffer kept for reuse once drained: a
// keyframe's spill is let go.
const spillKeep = 64 << 10

func newSpillConn(c net.Conn) *spillConn {
	sc := &spillConn{Conn: c}
	if s, ok := c.(syscall.Conn); ok && canTryWrite {
		if rc, err := s.SyscallConn(); err == nil {
			sc.rc = rc
			sc.try = sc.tryFD
		}
	}
	return sc
}

func (c *spillConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.nonBlocking.Load() || c.rc == nil {
		if err := c.drainLocked(); err != nil {
			return 0, err
		}
		return c.Conn.Write(p)
	}
	rest := p
	if len(c.spill) == 0 {
		n, err := c.tryWrite(p)
		if err != nil {
			return n, err
		}
		rest = p[n:]
	}
	c.spill = append(c.spill, rest...)
	return len(p), nil
}

// tryWrite writes what the socket takes now, without waiting. c.mu held.
func (c *spillConn) tryWrite(p []byte) (int, error) {
	c.tryBuf, c.tryN, c.tryErr = p, 0, nil
	err := c.rc.Write(c.try)
	c.tryBuf = nil
	if err != nil {
		return 0, err
	}
	return c.tryN, c.tryErr
}

func (c *spillConn) tryFD(fd uintptr) bool {
	c.tryN, c.tryErr = tryWriteFD(fd, c.tryBuf)
	return true // never wait for the socket
}

// spilled is how many bytes wait to be written.
func (c *spillConn) spilled() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.spill)
}

// drain writes what was kept, waiting for the socket (under its write
// deadline).
func (c *spillConn) drain() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.drainLocked()
}

func (c *spillConn) drainLocked() error {
	for len(c.spill) > 0 {
		n, err := c.Conn.Write(c.spill)
		c.spill = c.spill[:copy(c.spill, c.spill[n:])]
		if err != nil {
			return err
		}
	}
	if cap(c.spill) > spillKeep {
		c.spill = nil
	}
	return nil
}
