package ingest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/yutopp/go-amf0"
	rtmp "github.com/yutopp/go-rtmp"
	"github.com/yutopp/go-rtmp/message"

	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/rtmp/chunk"
)

// handshakeSize is C0+C1+C2, which pass to go-rtmp untouched.
const handshakeSize = 1 + 1536 + 1536

// tapConn sits between the client's socket and go-rtmp. All its methods run
// on go-rtmp's connection goroutine except Conn.Close during shutdown.
type tapConn struct {
	net.Conn
	s       *Server
	tracked bool

	hsLeft int
	rbuf   []byte
	cr     *chunk.Reader
	out    bytes.Buffer // chunks for go-rtmp
	ow     *bufio.Writer
	cw     *chunk.Writer

	rtmpConn *rtmp.Conn
	connect  map[string]any
	pubs     map[uint32]*publication // by message stream id
	creates  int                     // createStream commands seen
	closed   bool
}

type publication struct {
	name     string
	reject   *Reject
	rec      *recorder
	sink     Sink // a routed publish's (Config.Route); nil otherwise
	finished bool
}

func newTapConn(s *Server, nc net.Conn) *tapConn {
	c := &tapConn{
		Conn:   nc,
		s:      s,
		hsLeft: handshakeSize,
		rbuf:   make([]byte, 32*1024),
		cr:     chunk.NewReader(),
		pubs:   make(map[uint32]*publication),
	}
	c.cr.SetMaxMessage(20, flv.MaxCommandSize)
	c.cr.SetMaxMessage(flv.TagAudio, s.cfg.MaxAudio)
	c.cr.SetMaxMessage(flv.TagVideo, s.cfg.MaxVideo)
	c.cr.SetMaxMessage(flv.TagScript, s.cfg.MaxData)
	c.cr.SetMaxMessage(15, s.cfg.MaxData) // AMF3 data, dropped
	c.ow = bufio.NewWriter(&c.out)
	c.cw = chunk.NewWriter(c.ow)
	_ = nc.SetReadDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	return c
}

// Read gives go-rtmp the handshake verbatim, then only the control and
// command messages of the client's stream.
func (c *tapConn) Read(p []byte) (int, error) {
	if c.hsLeft > 0 {
		n, err := c.Conn.Read(p[:min(len(p), c.hsLeft)])
		c.hsLeft -= n
		if c.hsLeft == 0 {
			_ = c.Conn.SetReadDeadline(time.Time{})
		}
		return n, err
	}
	for c.out.Len() == 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.s.cfg.IdleTimeout))
		n, err := c.Conn.Read(c.rbuf)
		if n > 0 {
			if ferr := c.cr.Feed(c.rbuf[:n], c.onMessage); ferr != nil {
				c.s.log.Warn("rtmp ingest: dropping connection", "remote", c.RemoteAddr().String(), "err", ferr)
				return 0, ferr
			}
			if ferr := c.ow.Flush(); ferr != nil {
				return 0, ferr
			}
		}
		if err != nil {
			if c.out.Len() > 0 {
				break
			}
			return 0, err
		}
	}
	return c.out.Read(p)
}

// Close is called by go-rtmp once the connection is done.
func (c *tapConn) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	for _, pub := range c.pubs {
		c.finish(pub, "disconnect")
	}
	err := c.Conn.Close()
	c.s.untrack(c)
	return err
}

func (c *tapConn) onMessage(m *chunk.Message) error {
	switch m.TypeID {
	case chunk.TypeSetChunkSize, chunk.TypeAbort:
		return nil // applied by our reader; go-rtmp gets re-chunked data
	case flv.TagAudio, flv.TagVideo, flv.TagScript:
		return c.media(m)
	case 15: // AMF3 data: not supported, drop
		return nil
	case 20:
		if err := c.command(m); err != nil {
			return err // go-rtmp's own decoder must never see it
		}
	}
	return c.cw.WriteMessage(m.ChunkStreamID, m.TypeID, m.StreamID, m.Timestamp, m.Payload)
}

// command observes a client's command before go-rtmp handles it. A
// command that does not decode within flv.DecodeCommand's bounds ends the
// connection.
func (c *tapConn) command(m *chunk.Message) error {
	cmd, err := flv.DecodeCommand(m.Payload)
	if err != nil {
		return fmt.Errorf("command: %w", err)
	}
	name, args := cmd.Name, cmd.Args
	stream := ""
	switch name {
	case "connect":
		if len(args) > 0 {
			c.connect, _ = args[0].(map[string]any)
		}
	case "publish":
		stream = c.publish(m.StreamID, args)
	case "FCUnpublish":
		if len(args) > 1 {
			stream, _ = args[1].(string)
			for _, pub := range c.pubs {
				if pub.name == stream && pub.reject == nil {
					c.finish(pub, name)
				}
			}
		}
	case "deleteStream", "closeStream":
		id := m.StreamID
		if len(args) > 1 {
			if f, ok := args[1].(float64); ok {
				id = uint32(f)
			}
		}
		if pub := c.pubs[id]; pub != nil {
			stream = pub.name
			c.finish(pub, name)
			delete(c.pubs, id)
		}
	case "createStream":
		// A publisher creates one stream, a few when it retries; go-rtmp
		// answers each one past its limit with an error it formats with a
		// stack trace, so a client looping on createStream is cut here.
		if c.creates++; c.creates > maxCreateStreams {
			return fmt.Errorf("command: more than %d createStream on one connection", maxCreateStreams)
		}
	case "releaseStream", "FCPublish":
		if len(args) > 1 {
			stream, _ = args[1].(string)
		}
	}
	if c.s.cfg.OnCommand != nil {
		c.s.cfg.OnCommand(stream, name)
	}
	return nil
}

// publish decides on a publish request before go-rtmp sees it, so that media
// following it in the same read is already routed correctly.
func (c *tapConn) publish(msid uint32, args []any) string {
	name := ""
	if len(args) > 1 {
		name, _ = args[1].(string)
	}
	if old := c.pubs[msid]; old != nil {
		c.finish(old, "republish")
	}
	pub := &publication{name: name}
	c.pubs[msid] = pub
	app, _ := c.connect["app"].(string)
	tcURL, _ := c.connect["tcUrl"].(string)
	info := PublishInfo{App: app, Name: name, TCURL: tcURL, Connect: c.connect}
	if name != "" && c.s.cfg.Route != nil {
		sink, err := c.s.cfg.Route(info)
		if err != nil {
			var rj *Reject
			if !errors.As(err, &rj) {
				rj = &Reject{Code: "NetStream.Publish.Failed", Description: "publish refused"}
			}
			pub.reject = rj
			c.s.log.Info("rtmp ingest: publish rejected", "app", app, "code", rj.Code)
			return name
		}
		if sink != nil {
			pub.sink = sink
			c.s.log.Info("rtmp ingest: publish routed", "app", app)
			return name
		}
	}
	switch {
	case name == "":
		pub.reject = &Reject{Code: "NetStream.Publish.BadName", Description: "empty stream name"}
	case c.s.cfg.Key != "" && !keyMatches(name, c.s.cfg.Key):
		pub.reject = &Reject{Code: "NetStream.Publish.BadName", Description: "missing or wrong publish key"}
	case !c.s.claim(name):
		pub.reject = &Reject{Code: "NetStream.Publish.BadName", Description: "stream is already being published"}
	case c.s.cfg.OnPublish != nil:
		if err := c.s.cfg.OnPublish(info); err != nil {
			c.s.release(name)
			var rj *Reject
			if !errors.As(err, &rj) {
				rj = &Reject{Code: "NetStream.Publish.Failed", Description: "publish refused"}
			}
			pub.reject = rj
		}
	}
	if pub.reject != nil {
		c.s.log.Info("rtmp ingest: publish rejected", "app", app, "code", pub.reject.Code)
		return name
	}
	if c.s.cfg.Dir != "" {
		rec, err := c.s.newRecorder(name)
		if err != nil {
			c.s.log.Warn("rtmp ingest: not recording this publish", "app", app, "err", err)
		} else {
			pub.rec = rec
		}
	}
	c.s.log.Info("rtmp ingest: publish started", "app", app)
	return name
}

func (c *tapConn) finish(pub *publication, reason string) {
	if pub.finished {
		return
	}
	pub.finished = true
	if pub.reject != nil {
		return
	}
	if pub.sink != nil {
		pub.sink.End(reason)
		c.s.log.Info("rtmp ingest: routed publish ended", "reason", reason)
		return
	}
	c.s.release(pub.name)
	if pub.rec != nil {
		if err := pub.rec.close(); err != nil {
			c.s.log.Error("rtmp ingest: closing recording", "err", err)
		}
		pub.rec = nil
	}
	c.s.log.Info("rtmp ingest: publish ended", "reason", reason)
}

func (c *tapConn) media(m *chunk.Message) error {
	pub := c.pubs[m.StreamID]
	if pub == nil || pub.reject != nil || pub.finished {
		return nil
	}
	msg := Message{Type: m.TypeID, Timestamp: m.Timestamp}
	if pub.sink != nil && m.TypeID != flv.TagScript {
		msg.Body = m.Payload // the sink copies what it keeps
		return c.sinkMessage(pub, msg)
	}
	recBody := m.Payload
	if m.TypeID == flv.TagScript {
		var values []any
		var err error
		msg.Handler, values, err = decodeData(m.Payload)
		if err != nil {
			c.s.log.Debug("rtmp ingest: undecodable data message", "err", err)
			recBody = nil
		}
		if msg.Handler == "@setDataFrame" {
			// FMS stores the frame without the wrapper; so does the recording.
			msg.SetDataFrame = true
			recBody = recBody[min(len(recBody), 3+len("@setDataFrame")):]
			msg.Handler = ""
			if len(values) > 0 {
				msg.Handler, _ = values[0].(string)
				values = values[1:]
			}
		} else if msg.Handler == "@clearDataFrame" {
			recBody = nil
		}
		switch len(values) {
		case 0:
		case 1:
			msg.Values = values[0]
		default:
			msg.Values = values
		}
	}
	if pub.rec != nil && recBody != nil {
		err := errQuota
		if c.s.reserve(int64(tagOverhead + len(recBody))) {
			err = pub.rec.w.WriteTag(m.TypeID, m.Timestamp, recBody)
		}
		if err != nil {
			// The publish goes on; only its recording stops, ending on
			// the last whole tag.
			c.s.log.Warn("rtmp ingest: recording stopped", "file", pub.rec.file, "err", err)
			_ = pub.rec.close()
			pub.rec = nil
		}
	}
	if pub.sink != nil {
		// Without "@setDataFrame": the body a target writes as is. An
		// undecodable one, or @clearDataFrame, is not passed on.
		if recBody == nil {
			return nil
		}
		msg.Body = recBody
		return c.sinkMessage(pub, msg)
	}
	if c.s.cfg.OnMessage != nil {
		msg.Body = bytes.Clone(m.Payload)
		c.s.cfg.OnMessage(pub.name, msg)
	}
	return nil
}

// sinkMessage hands a routed publish's message to its sink; a sink that
// refuses it ends the publish and the connection.
func (c *tapConn) sinkMessage(pub *publication, msg Message) error {
	if err := pub.sink.Message(msg); err != nil {
		c.finish(pub, "refused by its sink")
		return fmt.Errorf("routed publish: %w", err)
	}
	return nil
}

func decodeData(payload []byte) (string, []any, error) {
	vals, err := flv.DecodeData(payload)
	if len(vals) == 0 {
		if err == nil {
			err = errors.New("empty data message")
		}
		return "", nil, err
	}
	handler, _ := vals[0].(string)
	return handler, vals[1:], err
}

// handler is go-rtmp's view of a connection. Publish decisions were already
// taken by the tap; the handler only voices them.
type handler struct {
	rtmp.DefaultHandler
	c *tapConn
}

func (h *handler) OnServe(conn *rtmp.Conn) { h.c.rtmpConn = conn }

func (h *handler) OnPublish(ctx *rtmp.StreamContext, _ uint32, _ *message.NetStreamPublish) error {
	pub := h.c.pubs[ctx.StreamID]
	if pub == nil {
		return errors.New("publish not seen by tap")
	}
	if pub.reject == nil {
		return nil
	}
	// go-rtmp answers refusals with NetStream.Publish.Failed; send the
	// specific code first so that the client reports the real reason.
	if err := h.sendStatus(ctx.StreamID, "error", pub.reject.Code, pub.reject.Description); err != nil {
		return err
	}
	// go-rtmp writes asynchronously and drops what is pending when the
	// refusal closes the connection. A second write on the same chunk
	// stream waits until the first is on the wire; the client stops at the
	// first error status, so the repeat costs nothing.
	if err := h.sendStatus(ctx.StreamID, "error", pub.reject.Code, pub.reject.Description); err != nil {
		return err
	}
	return pub.reject
}

func (h *handler) sendStatus(msid uint32, level, code, desc string) error {
	var body bytes.Buffer
	enc := amf0.NewEncoder(&body)
	if err := enc.Encode(nil); err != nil {
		return err
	}
	if err := enc.Encode(map[string]any{"level": level, "code": code, "description": desc}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return h.c.rtmpConn.Write(ctx, 5, 0, &rtmp.ChunkMessage{
		StreamID: msid,
		Message: &message.CommandMessage{
			CommandName: "onStatus",
			Encoding:    message.EncodingTypeAMF0,
			Body:        &body,
		},
	})
}

// keyMatches reports whether a publish name carries the query key=want,
// comparing in constant time.
func keyMatches(name, want string) bool {
	q := strings.IndexByte(name, '?')
	if q < 0 {
		return false
	}
	vals, err := url.ParseQuery(name[q+1:])
	if err != nil {
		return false
	}
	got := vals.Get("key")
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// errQuota stops a recording that would pass RecordingsMaxBytes.
var errQuota = errors.New("recordings quota (--recordings-max-bytes) is full")

// recorder writes one publish to an FLV file.
type recorder struct {
	file string // base name, for logs
	f    *os.File
	bw   *bufio.Writer
	w    *flv.Writer
}

// flvHeaderSize is the FLV file header and the first previous-tag size;
// tagOverhead a tag's header and its previous-tag size.
const (
	flvHeaderSize = 9 + 4
	tagOverhead   = 11 + 4
)

func (s *Server) newRecorder(name string) (*recorder, error) {
	path := recordingPath(s.cfg.Dir, name)
	if s.cfg.RecordingsMaxBytes > 0 {
		if info, err := os.Stat(path); err == nil && info.Mode().IsRegular() {
			s.recBytes.Add(-info.Size()) // about to be truncated
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("create recording: %w", err)
		}
	}
	if !s.reserve(flvHeaderSize) {
		return nil, errQuota
	}
	f, err := os.Create(path)
	if err != nil {
		if s.cfg.RecordingsMaxBytes > 0 {
			s.recBytes.Add(-flvHeaderSize)
		}
		return nil, fmt.Errorf("create recording: %w", err)
	}
	bw := bufio.NewWriterSize(f, 64*1024)
	w, err := flv.NewWriter(bw, true, true)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("create recording: %w", err)
	}
	return &recorder{file: filepath.Base(path), f: f, bw: bw, w: w}, nil
}

func (r *recorder) close() error {
	err := r.bw.Flush()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// sanitize makes a stream name safe as a file name: the query goes, anything
// but letters, digits, '-', '_' and '.' becomes '_', and names that would be
// hidden or relative ('.', '..') get a prefix.
func sanitize(name string) string {
	if q := strings.IndexByte(name, '?'); q >= 0 {
		name = name[:q]
	}
	b := []byte(name)
	for i, ch := range b {
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '-', ch == '_', ch == '.':
		default:
			b[i] = '_'
		}
	}
	name = string(b)
	if name == "" || name[0] == '.' {
		name = "stream_" + name
	}
	if len(name) > 200 {
		name = name[:200]
	}
	return name
}
