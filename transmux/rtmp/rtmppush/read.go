package rtmppush

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/yutopp/go-rtmp/message"

	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/rtmp/chunk"
)

// readLoop owns all reads: it answers acknowledgement windows and pings,
// forwards command replies to Dial and turns a dead connection into Err.
func (p *Publisher) readLoop() {
	defer close(p.readerDone)
	buf := make([]byte, 16*1024)
	for {
		n, err := p.conn.Read(buf)
		if n > 0 {
			p.received += uint64(n)
			if ferr := p.cr.Feed(buf[:n], p.handleMessage); ferr != nil {
				p.fail(fmt.Errorf("rtmp publish %s: %w", p.ep.Redacted(), ferr))
				_ = p.conn.Close()
				return
			}
			if p.ackWindow > 0 && p.received-p.lastAck >= uint64(p.ackWindow) {
				p.lastAck = p.received
				_ = p.sendControl(typeAck, binary.BigEndian.AppendUint32(nil, uint32(p.received)), time.Now().Add(p.wto))
			}
		}
		if err != nil {
			if p.closing.Load() {
				p.fail(fmt.Errorf("rtmp publish %s: %w", p.ep.Redacted(), ErrClosed))
			} else if errors.Is(err, io.EOF) {
				p.fail(fmt.Errorf("rtmp publish %s: connection closed by ingest: %w", p.ep.Redacted(), err))
			} else {
				p.fail(fmt.Errorf("rtmp publish %s: read: %w", p.ep.Redacted(), err))
			}
			return
		}
	}
}

func (p *Publisher) handleMessage(m *chunk.Message) error {
	switch m.TypeID {
	case typeWindowAckSize:
		if len(m.Payload) >= 4 {
			p.ackWindow = binary.BigEndian.Uint32(m.Payload)
		}
	case typePeerBandwidth:
		if len(m.Payload) >= 4 {
			size := int32(binary.BigEndian.Uint32(m.Payload))
			if size != p.peerBW {
				p.peerBW = size
				// The spec asks for a Window Acknowledgement Size in return.
				_ = p.sendControl(typeWindowAckSize, binary.BigEndian.AppendUint32(nil, uint32(size)), time.Now().Add(p.wto))
			}
		}
	case typeUserControl:
		var msg message.Message
		if err := message.NewDecoder(bytes.NewReader(m.Payload)).Decode(message.TypeIDUserCtrl, &msg); err != nil {
			return nil // unknown events are harmless
		}
		if ping, ok := msg.(*message.UserCtrl).Event.(*message.UserCtrlEventPingRequest); ok {
			resp := []byte{0, 7}
			resp = binary.BigEndian.AppendUint32(resp, ping.Timestamp)
			_ = p.sendControl(typeUserControl, resp, time.Now().Add(p.wto))
		}
	case typeCommandAMF0:
		c, err := flv.DecodeCommand(m.Payload)
		if err != nil {
			// Deep nesting, huge declared lengths or garbage: the ingest is
			// broken or hostile, and the connection ends here.
			return fmt.Errorf("command from ingest: %w", err)
		}
		return p.handleCommand(reply{name: c.Name, txID: c.TxID, args: c.Args})
	}
	return nil
}

func (p *Publisher) handleCommand(r reply) error {
	if !p.started.Load() {
		select {
		case p.replies <- r:
		case <-p.readerQuit:
		}
		return nil
	}
	switch r.name {
	case "onStatus":
		level, code, desc := statusInfo(r.args)
		if level == "error" {
			err := &RejectedError{Code: code, Description: p.ep.redact(desc)}
			p.log.Warn("rtmp ingest reported an error", "code", code)
			return fmt.Errorf("ingest status: %w", err)
		}
		p.log.Debug("rtmp status", "code", code)
	case "close":
		return fmt.Errorf("ingest sent close")
	}
	return nil
}

// fail records the first error and signals Done.
func (p *Publisher) fail(err error) {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	if p.err != nil {
		return
	}
	p.err = err
	close(p.done)
}
