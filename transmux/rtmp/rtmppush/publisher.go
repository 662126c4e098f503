// Package rtmppush publishes a live stream to an RTMP or RTMPS ingest.
//
// It is built on go-rtmp's handshake and message codecs but drives the
// publish sequence itself: go-rtmp's client cannot add connect fields, ignores
// onStatus errors and has no timeouts, and all three matter for real ingests
// (YouTube, Twitch, Facebook, nanoStream, nginx-rtmp). Outgoing messages are
// framed by package chunk directly on a bufio.Writer from the caller's
// goroutine, so the media path has no goroutine hop and no allocation.
package rtmppush

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/yutopp/go-amf0"
	"github.com/yutopp/go-rtmp/handshake"
	"github.com/yutopp/go-rtmp/message"

	"github.com/castbridge/castbridge/transmux/rtmp/chunk"
)

// Errors reported by Dial and the Publisher. Match them with errors.Is.
var (
	// ErrUnreachable: the ingest could not be reached (DNS, refused, dial timeout, TLS).
	ErrUnreachable = errors.New("ingest unreachable")
	// ErrTimeout: the ingest did not complete the publish sequence in time.
	ErrTimeout = errors.New("ingest did not answer in time")
	// ErrInvalidURL: the ingest address is malformed.
	ErrInvalidURL = errors.New("invalid ingest URL")
	// ErrClosed: the Publisher was closed.
	ErrClosed = errors.New("publisher closed")

	// errSessionEnded: the reader recorded why the session ended in Err.
	errSessionEnded = errors.New("session ended")
)

// RejectedError is an ingest's refusal: an _error reply to connect or an
// onStatus with level "error" (for example NetStream.Publish.BadName when a
// key is wrong or already live).
type RejectedError struct {
	Code        string // e.g. NetConnection.Connect.Rejected, NetStream.Publish.BadName
	Description string // server text, with the stream key masked
}

func (e *RejectedError) Error() string {
	if e.Description == "" {
		return "rejected by ingest: " + e.Code
	}
	return "rejected by ingest: " + e.Code + ": " + e.Description
}

// DefaultFlashVer is the flashVer sent in connect. Some ingests choose their
// behaviour from it; FMLE's is the one they all know.
const DefaultFlashVer = "FMLE/3.0 (compatible; castbridge)"

const (
	defaultDialTimeout    = 10 * time.Second
	defaultSendBuffer     = 256 << 10
	defaultPublishTimeout = 10 * time.Second
	defaultWriteTimeout   = 5 * time.Second
	closeTimeout          = time.Second
	outChunkSize          = 4096
)

// Chunk stream ids, as ffmpeg and OBS use them.
const (
	csidControl = 2
	csidCommand = 3
	csidAudio   = 4
	csidData    = 5
	csidVideo   = 6
)

// RTMP message type ids.
const (
	typeSetChunkSize  = 1
	typeAck           = 3
	typeUserControl   = 4
	typeWindowAckSize = 5
	typePeerBandwidth = 6
	typeAudio         = 8
	typeVideo         = 9
	typeDataAMF0      = 18
	typeCommandAMF0   = 20
)

// Config configures Dial.
type Config struct {
	Endpoint Endpoint
	// ConnectInfo holds extra keys for the connect command object (for
	// example nanoStream's rtmpconnectinfo). Values may be string, float64,
	// int or bool. They cannot replace app, type, flashVer or tcUrl.
	ConnectInfo map[string]any
	FlashVer    string // default DefaultFlashVer

	DialTimeout    time.Duration // TCP+TLS connect, default 10 s
	PublishTimeout time.Duration // handshake to NetStream.Publish.Start, default 10 s
	WriteTimeout   time.Duration // every network write, default 5 s
	TLSConfig      *tls.Config   // for rtmps; ServerName defaults to the host
	// SendBuffer sets the socket's send buffer (default 256 KiB). Left to
	// the kernel, it grows to megabytes, and a stalled ingest then swallows
	// many seconds of video before the sender's own queue notices anything.
	SendBuffer int
	Logger     *slog.Logger
}

// Publisher is a live RTMP publish session. Write* methods are meant to be
// called from one goroutine; Close may be called from any goroutine at any
// time.
type Publisher struct {
	ep     Endpoint
	log    *slog.Logger
	conn   net.Conn
	wto    time.Duration
	stream uint32 // message stream id from createStream

	writeMu sync.Mutex
	bw      *bufio.Writer
	cw      *chunk.Writer
	// Guarded by writeMu: batch leaves media messages in bw until Flush;
	// deadline is the write deadline last set on conn.
	batch    bool
	deadline time.Time
	closing  atomic.Bool
	sent     atomic.Uint64

	// Reader goroutine state.
	cr            *chunk.Reader
	received      uint64
	ackWindow     uint32
	lastAck       uint64
	peerBW        int32
	started       atomic.Bool   // Publish.Start seen; reader stops forwarding replies
	readerRunning bool          // set by Dial's goroutine only
	replies       chan reply    // command replies during Dial
	readerQuit    chan struct{} // closed to stop the reader from blocking on replies
	readerDone    chan struct{}
	done          chan struct{}
	errMu         sync.Mutex
	err           error
	closeOnce     sync.Once
	closeResult   error
}

type reply struct {
	name string
	txID float64
	args []any
}

// Dial connects to cfg.Endpoint and runs the publish sequence: handshake,
// connect (waiting for _result), Set Chunk Size, releaseStream, FCPublish,
// createStream (waiting for the stream id), publish(name, "live"), then waits
// for onStatus NetStream.Publish.Start. It returns once the ingest accepts
// media.
func Dial(ctx context.Context, cfg Config) (*Publisher, error) {
	ep := cfg.Endpoint
	if ep.scheme == "" {
		return nil, fmt.Errorf("rtmp publish: %w: empty endpoint", ErrInvalidURL)
	}
	red := ep.Redacted()
	connectObj, err := connectObject(cfg)
	if err != nil {
		return nil, fmt.Errorf("rtmp publish %s: %w", red, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("endpoint", red)
	dialTO := durationOr(cfg.DialTimeout, defaultDialTimeout)
	publishTO := durationOr(cfg.PublishTimeout, defaultPublishTimeout)

	conn, err := dial(ctx, ep, cfg.TLSConfig, dialTO, cmp.Or(cfg.SendBuffer, defaultSendBuffer))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("rtmp publish %s: dial: %w", red, ctx.Err())
		}
		return nil, fmt.Errorf("rtmp publish %s: %w: %w", red, ErrUnreachable, err)
	}
	log.Debug("rtmp connected", "remote", conn.RemoteAddr())

	p := &Publisher{
		ep:         ep,
		log:        log,
		conn:       conn,
		wto:        durationOr(cfg.WriteTimeout, defaultWriteTimeout),
		cr:         chunk.NewReader(),
		ackWindow:  2500000,
		replies:    make(chan reply, 16),
		readerQuit: make(chan struct{}),
		readerDone: make(chan struct{}),
		done:       make(chan struct{}),
	}
	// 32 KiB holds a P-frame of a 2.5 Mbit/s stream with the audio batched
	// beside it (one write); keyframes take a few. Per target, it is a good
	// part of a stream's memory.
	p.bw = bufio.NewWriterSize(countingWriter{conn, &p.sent}, 32*1024)
	p.cw = chunk.NewWriter(p.bw)
	if err := p.setup(ctx, publishTO, connectObj); err != nil {
		p.closing.Store(true)
		close(p.readerQuit)
		_ = conn.Close()
		if p.readerRunning {
			<-p.readerDone
		}
		if errors.Is(err, errSessionEnded) {
			return nil, p.Err()
		}
		return nil, fmt.Errorf("rtmp publish %s: %w", red, err)
	}
	log.Info("rtmp publish started")
	return p, nil
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func dial(ctx context.Context, ep Endpoint, tlsCfg *tls.Config, timeout time.Duration, sendBuffer int) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, sendBuffer)
		})
		return errors.Join(err, serr)
	}}
	if ep.scheme != "rtmps" {
		return d.DialContext(ctx, "tcp", ep.addr)
	}
	c := tlsCfg.Clone()
	if c == nil {
		c = &tls.Config{}
	}
	if c.ServerName == "" {
		c.ServerName = ep.hostname
	}
	// The TLS handshake counts as part of reaching the ingest.
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return (&tls.Dialer{NetDialer: d, Config: c}).DialContext(ctx, "tcp", ep.addr)
}

func connectObject(cfg Config) (map[string]any, error) {
	flashVer := cfg.FlashVer
	if flashVer == "" {
		flashVer = DefaultFlashVer
	}
	obj := make(map[string]any, len(cfg.ConnectInfo)+4)
	for k, v := range cfg.ConnectInfo {
		switch v := v.(type) {
		case string, float64, bool:
			obj[k] = v
		case int:
			obj[k] = float64(v)
		default:
			return nil, fmt.Errorf("connect info %q: unsupported type %T", k, v)
		}
	}
	obj["app"] = cfg.Endpoint.app
	obj["type"] = "nonprivate"
	obj["flashVer"] = flashVer
	obj["tcUrl"] = cfg.Endpoint.TCURL()
	return obj, nil
}

// setup runs the publish sequence under one deadline.
func (p *Publisher) setup(ctx context.Context, timeout time.Duration, connectObj map[string]any) error {
	deadline := time.Now().Add(timeout)
	// Cancelling ctx aborts blocked I/O at once.
	stop := context.AfterFunc(ctx, func() { _ = p.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	classify := func(step string, err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", step, ctx.Err())
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("%s: %w", step, ErrTimeout)
		}
		return fmt.Errorf("%s: %w", step, err)
	}

	_ = p.conn.SetDeadline(deadline)
	if err := handshake.HandshakeWithServer(p.conn, p.conn, &handshake.Config{
		// Like librtmp: servers answering with the digest handshake do not
		// echo C1, and none of them require the client to check.
		SkipHandshakeVerification: true,
	}); err != nil {
		return classify("handshake", err)
	}
	_ = p.conn.SetReadDeadline(time.Time{})

	p.readerRunning = true
	go p.readLoop()

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	wait := func(step string, match func(reply) (bool, error)) error {
		for {
			select {
			case r := <-p.replies:
				if ok, err := match(r); err != nil || ok {
					return err
				}
			case <-p.done:
				// The reader may have queued the server's last words (a
				// refusal, typically) just before the connection ended:
				// they explain the end better than EOF does.
				for {
					select {
					case r := <-p.replies:
						if ok, err := match(r); err != nil || ok {
							return err
						}
						continue
					default:
					}
					return errSessionEnded
				}
			case <-timer.C:
				return fmt.Errorf("%s: %w", step, ErrTimeout)
			case <-ctx.Done():
				return fmt.Errorf("%s: %w", step, ctx.Err())
			}
		}
	}
	send := func(step string, msid uint32, name string, tx float64, args ...any) error {
		if err := p.sendCommand(msid, name, tx, deadline, args...); err != nil {
			return classify(step, err)
		}
		return nil
	}

	if err := send("connect", 0, "connect", 1, connectObj); err != nil {
		return err
	}
	err := wait("connect", func(r reply) (bool, error) {
		if r.txID != 1 || (r.name != "_result" && r.name != "_error") {
			return false, nil
		}
		if r.name == "_error" {
			return true, fmt.Errorf("connect: %w", p.rejected(r.args, "NetConnection.Connect.Rejected"))
		}
		return true, nil
	})
	if err != nil {
		return err
	}

	if err := p.sendControl(typeSetChunkSize, binary.BigEndian.AppendUint32(nil, outChunkSize), deadline); err != nil {
		return classify("set chunk size", err)
	}
	p.cw.SetChunkSize(outChunkSize)

	name := p.ep.name
	if err := send("releaseStream", 0, "releaseStream", 2, nil, name); err != nil {
		return err
	}
	if err := send("FCPublish", 0, "FCPublish", 3, nil, name); err != nil {
		return err
	}
	if err := send("createStream", 0, "createStream", 4, nil); err != nil {
		return err
	}
	err = wait("createStream", func(r reply) (bool, error) {
		if r.txID != 4 || (r.name != "_result" && r.name != "_error") {
			return false, nil
		}
		if r.name == "_error" {
			return true, fmt.Errorf("createStream: %w", p.rejected(r.args, "NetConnection.Call.Failed"))
		}
		if len(r.args) < 2 {
			return true, fmt.Errorf("createStream: reply without stream id")
		}
		id, ok := r.args[1].(float64)
		if !ok || id < 0 || id > 1<<31 {
			return true, fmt.Errorf("createStream: bad stream id %v", r.args[1])
		}
		p.stream = uint32(id)
		return true, nil
	})
	if err != nil {
		return err
	}

	if err := send("publish", p.stream, "publish", 5, nil, name, "live"); err != nil {
		return err
	}
	err = wait("publish", func(r reply) (bool, error) {
		if r.name == "_error" {
			return true, fmt.Errorf("publish: %w", p.rejected(r.args, "NetStream.Publish.Failed"))
		}
		if r.name != "onStatus" {
			return false, nil
		}
		level, code, desc := statusInfo(r.args)
		if level == "error" {
			return true, fmt.Errorf("publish: %w", &RejectedError{Code: code, Description: p.ep.redact(desc)})
		}
		p.log.Debug("rtmp status", "code", code)
		return code == "NetStream.Publish.Start", nil
	})
	if err != nil {
		return err
	}
	p.started.Store(true)
	return nil
}

// rejected builds a RejectedError from a reply's information object.
func (p *Publisher) rejected(args []any, fallbackCode string) error {
	_, code, desc := statusInfo(args)
	if code == "" {
		code = fallbackCode
	}
	return &RejectedError{Code: code, Description: p.ep.redact(desc)}
}

// statusInfo finds level, code and description in the first object among
// args (replies put a null or properties object first).
func statusInfo(args []any) (level, code, desc string) {
	for i := len(args) - 1; i >= 0; i-- {
		m := asMap(args[i])
		if m == nil {
			continue
		}
		level, _ = m["level"].(string)
		code, _ = m["code"].(string)
		desc, _ = m["description"].(string)
		if code != "" || level != "" {
			return level, code, desc
		}
	}
	return "", "", ""
}

func asMap(v any) map[string]any {
	switch m := v.(type) {
	case map[string]any:
		return m
	case amf0.ECMAArray:
		return m
	}
	return nil
}

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
		r, err := decodeCommand(m.Payload)
		if err != nil {
			p.log.Debug("rtmp: undecodable command from ingest", "err", err)
			return nil
		}
		return p.handleCommand(r)
	}
	return nil
}

func decodeCommand(payload []byte) (reply, error) {
	var msg message.Message
	if err := message.NewDecoder(bytes.NewReader(payload)).Decode(message.TypeIDCommandMessageAMF0, &msg); err != nil {
		return reply{}, err
	}
	cmd := msg.(*message.CommandMessage)
	r := reply{name: cmd.CommandName, txID: float64(cmd.TransactionID)}
	dec := amf0.NewDecoder(cmd.Body)
	for {
		var v any
		if err := dec.Decode(&v); err != nil {
			if errors.Is(err, io.EOF) {
				return r, nil
			}
			return r, err
		}
		r.args = append(r.args, v)
	}
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

// Done is closed when the session has ended: closed by the ingest, broken,
// or closed with Close.
func (p *Publisher) Done() <-chan struct{} { return p.done }

// Err returns why the session ended, or nil while it is live.
func (p *Publisher) Err() error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.err
}

// BytesSent counts bytes written to the connection after the handshake.
func (p *Publisher) BytesSent() uint64 { return p.sent.Load() }

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
