package rtmppush

import (
	"bytes"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/yutopp/go-amf0"
	"github.com/yutopp/go-rtmp/message"
)

// WriteAudio sends an audio message (an FLV audio tag body).
func (p *Publisher) WriteAudio(timestamp uint32, body []byte) error {
	return p.writeMedia(csidAudio, typeAudio, timestamp, body)
}

// WriteVideo sends a video message (an FLV video tag body).
func (p *Publisher) WriteVideo(timestamp uint32, body []byte) error {
	return p.writeMedia(csidVideo, typeVideo, timestamp, body)
}

// WriteData sends an AMF0 data message, such as the @setDataFrame body built
// by flv.AppendSetDataFrame.
func (p *Publisher) WriteData(timestamp uint32, body []byte) error {
	return p.writeMedia(csidData, typeDataAMF0, timestamp, body)
}

// SetBatching turns batching on or off. While it is on, WriteAudio,
// WriteVideo and WriteData leave their message in the 64 KiB send buffer
// (written out only when it fills) until Flush, so that several small
// messages (audio frames, say) go out in one write instead of one each.
// Turning it off does not flush. Protocol messages (acknowledgements,
// commands) always flush, taking what is buffered with them.
func (p *Publisher) SetBatching(on bool) {
	p.writeMu.Lock()
	p.batch = on
	p.writeMu.Unlock()
}

// Buffered is the number of bytes written but not yet sent.
func (p *Publisher) Buffered() int {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	return p.bw.Buffered()
}

// CanWriteNonBlocking says whether SetNonBlocking has any effect: the
// connection is a socket of this platform's kind.
func (p *Publisher) CanWriteNonBlocking() bool { return p.sc.rc != nil }

// SetNonBlocking turns non-blocking writing on or off. While it is on,
// no write waits for the ingest: what the socket's send buffer cannot
// take at once is kept, in order, and written by the next blocking write
// or by Drain (Spilled counts it). So a media goroutine may write while
// the ingest keeps up, and hand over to a writer of its own once the
// ingest falls behind.
func (p *Publisher) SetNonBlocking(on bool) {
	p.sc.nonBlocking.Store(on)
}

// Spilled is the number of bytes a non-blocking write kept back.
func (p *Publisher) Spilled() int { return p.sc.spilled() }

// Drain writes what non-blocking writes kept back, waiting for the ingest
// up to the write timeout.
func (p *Publisher) Drain() error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	if p.sc.spilled() == 0 {
		return nil
	}
	if err := p.usableLocked(); err != nil {
		return err
	}
	p.refreshDeadlineLocked()
	if err := p.sc.drain(); err != nil {
		return p.brokenLocked(err)
	}
	return nil
}

// Flush sends what batching left in the send buffer.
func (p *Publisher) Flush() error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	if p.bw.Buffered() == 0 {
		return nil
	}
	if err := p.usableLocked(); err != nil {
		return err
	}
	p.refreshDeadlineLocked()
	if err := p.cw.Flush(); err != nil {
		return p.brokenLocked(err)
	}
	return nil
}

func (p *Publisher) writeMedia(csid uint32, typ uint8, ts uint32, body []byte) error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	if err := p.usableLocked(); err != nil {
		return err
	}
	p.refreshDeadlineLocked()
	err := p.cw.WriteMessage(csid, typ, p.stream, ts, body)
	if err == nil && !p.batch {
		err = p.cw.Flush()
	}
	if err != nil {
		return p.brokenLocked(err)
	}
	return nil
}

// usableLocked says why nothing can be written any more, if so.
func (p *Publisher) usableLocked() error {
	if p.closing.Load() {
		return fmt.Errorf("rtmp publish %s: %w", p.ep.Redacted(), ErrClosed)
	}
	return p.Err()
}

// brokenLocked ends the session after a failed write: the connection is
// unusable mid-message; closing it ends the reader too.
func (p *Publisher) brokenLocked(err error) error {
	err = fmt.Errorf("rtmp publish %s: write: %w", p.ep.Redacted(), err)
	p.fail(err)
	_ = p.conn.Close()
	return err
}

// deadlineSlack is how stale the write deadline of media writes may get
// before it is set again: setting it on every message (a runtime timer
// update each) showed in the load profile. A media write thus has between
// WriteTimeout-deadlineSlack and WriteTimeout to complete.
const deadlineSlack = time.Second

// refreshDeadlineLocked moves the write deadline to now+WriteTimeout when it
// is more than deadlineSlack short of that. writeMu must be held.
func (p *Publisher) refreshDeadlineLocked() {
	want := time.Now().Add(p.wto)
	if want.Sub(p.deadline) > min(deadlineSlack, p.wto/2) {
		_ = p.conn.SetWriteDeadline(want)
		p.deadline = want
	}
}

// writeLocked frames and flushes one message (with whatever batching left
// in the buffer) under an explicit deadline. writeMu must be held.
func (p *Publisher) writeLocked(csid uint32, typ uint8, msid, ts uint32, body []byte, deadline time.Time) error {
	_ = p.conn.SetWriteDeadline(deadline)
	p.deadline = deadline
	if err := p.cw.WriteMessage(csid, typ, msid, ts, body); err != nil {
		return err
	}
	return p.cw.Flush()
}

// countingWriter counts the bytes that reach the connection.
type countingWriter struct {
	w io.Writer
	n *atomic.Uint64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(uint64(n))
	return n, err
}

func (p *Publisher) sendControl(typ uint8, payload []byte, deadline time.Time) error {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	return p.writeLocked(csidControl, typ, 0, 0, payload, deadline)
}

func (p *Publisher) sendCommand(msid uint32, name string, tx float64, deadline time.Time, args ...any) error {
	var body bytes.Buffer
	enc := amf0.NewEncoder(&body)
	for _, a := range args {
		if err := enc.Encode(a); err != nil {
			return fmt.Errorf("encode %s: %w", name, err)
		}
	}
	var msg bytes.Buffer
	if err := message.NewEncoder(&msg).Encode(&message.CommandMessage{
		CommandName:   name,
		TransactionID: int64(tx),
		Encoding:      message.EncodingTypeAMF0,
		Body:          &body,
	}); err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	return p.writeLocked(csidCommand, typeCommandAMF0, msid, 0, msg.Bytes(), deadline)
}
