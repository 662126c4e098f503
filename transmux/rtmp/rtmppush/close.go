package rtmppush

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Close ends the session: FCUnpublish and deleteStream go out (best effort,
// with a short deadline), then the connection is closed and the reader
// goroutine awaited. It is idempotent and safe to call concurrently with
// Write*.
func (p *Publisher) Close() error {
	p.closeOnce.Do(func() {
		p.closing.Store(true)
		close(p.readerQuit)
		// Unblock a write stuck on a stalled ingest, then take the lock.
		deadline := time.Now().Add(closeTimeout)
		_ = p.conn.SetWriteDeadline(deadline)
		if p.Err() == nil {
			name := p.ep.name
			if err := p.sendCommand(0, "FCUnpublish", 6, deadline, nil, name); err == nil {
				_ = p.sendCommand(0, "deleteStream", 7, deadline, nil, float64(p.stream))
			}
		}
		p.closeResult = p.conn.Close()
		<-p.readerDone
		p.fail(fmt.Errorf("rtmp publish %s: %w", p.ep.Redacted(), ErrClosed))
		p.log.Info("rtmp publish closed")
	})
	if p.closeResult != nil && !errors.Is(p.closeResult, net.ErrClosed) {
		return fmt.Errorf("rtmp publish %s: close: %w", p.ep.Redacted(), p.closeResult)
	}
	return nil
}

// Abort cuts the connection at once, without FCUnpublish: for an owner
// whose deadline for a clean Close has passed. A Close in progress, or one
// to come, then returns promptly. Safe to call concurrently with anything.
func (p *Publisher) Abort() {
	p.closing.Store(true)
	_ = p.conn.Close()
}
