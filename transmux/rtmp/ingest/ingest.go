// Package ingest is an in-process RTMP(S) ingest server. castbridge runs one
// to record published streams to FLV files and to take RTMP publishers in
// (Config.Route hands a publish with a relay key to the gateway), and tests
// use it to observe exactly what a publisher sends.
//
// go-rtmp's server runs the protocol (handshake, connect/createStream/publish
// replies), but every connection is tapped: the client's chunk stream is
// parsed by package chunk first, media and data messages are taken out there
// and only control and command messages are passed on, re-chunked, to
// go-rtmp. That keeps custom connect keys and onCuePoint (which go-rtmp's
// decoders drop), makes publish decisions before the first media byte, avoids
// parsing media twice, and sidesteps go-rtmp's reader ignoring the extended
// timestamp of continuation chunks after 4.6 hours of streaming.
package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	rtmp "github.com/yutopp/go-rtmp"
)

// Config configures a Server.
type Config struct {
	Addr string // listen address, e.g. "127.0.0.1:1935" or "127.0.0.1:0"
	// Dir, when non-empty, receives one recording per publish:
	// Dir/<name>.flv, the name stripped of its query and of anything that
	// could leave Dir.
	Dir string
	// OnPublish, when set, decides whether a publish is accepted. Returning
	// a *Reject refuses it with an onStatus of level "error" and the
	// Reject's code; any other error refuses it with NetStream.Publish.Failed.
	OnPublish func(PublishInfo) error
	// Route, when set, is asked first about every publish with a non-empty
	// name: a Route that takes the publish returns the Sink its media goes
	// to (then Key, the claim on the name, OnPublish, the recording and
	// OnMessage do not apply to it); nil and no error leaves the publish to
	// those rules; an error refuses it (a *Reject's code, else
	// NetStream.Publish.Failed). castbridge routes relay keys to streams
	// this way (RTMP in).
	Route func(PublishInfo) (Sink, error)
	// OnMessage, when set, sees every audio, video and data message of an
	// accepted publish, in order, as received.
	OnMessage func(stream string, m Message)
	// OnCommand, when set, sees every command a client sends (connect,
	// releaseStream, FCPublish, createStream, publish, FCUnpublish,
	// deleteStream, ...). stream is the publish's name when the command
	// refers to one, else "".
	OnCommand func(stream string, command string)
	Logger    *slog.Logger

	// Key, when non-empty, is the publish key: a publish is accepted only
	// when its stream name carries it as the query "?key=<Key>" (for
	// example rtmp://host/live/cam1?key=<Key>). It is compared in constant
	// time; a missing or wrong key is refused with NetStream.Publish.BadName.
	// The query never reaches a recording's file name.
	Key string
	// MaxConns caps open connections; past it new ones are closed at once.
	// 0 means DefaultMaxConns.
	MaxConns int
	// MaxAudio, MaxVideo and MaxData cap the length a client may declare
	// for one audio, video or data message; a longer one ends the
	// connection before anything of it is buffered. 0 means the defaults.
	MaxAudio, MaxVideo, MaxData uint32
	// IdleTimeout ends a connection that sends nothing for this long after
	// its handshake. 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the whole handshake (C0, C1 and C2): one
	// deadline from the accept, which a client trickling a byte at a time
	// cannot push back. 0 means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// RecordingsMaxBytes, when positive, caps the bytes of all recordings
	// (*.flv) in Dir, counting those present at Listen. A recording that
	// would pass it, or whose write fails (a full disk), stops with a
	// logged warning; the publish itself goes on.
	RecordingsMaxBytes int64
	// TLS, when set, makes the server RTMPS: every connection is a TLS
	// connection (the handshake bounded by HandshakeTimeout like the RTMP
	// one).
	TLS *tls.Config
}

// Sink takes a routed publish's media (Config.Route), on the connection's
// goroutine, in order. m.Body is the chunk stream's buffer, valid only
// during the call: a sink that keeps it copies it. End is called once,
// when the publish ends for any reason (unpublish, disconnect, a new
// publish on the same message stream, the server closing); no Message
// follows it. reason is "disconnect" when the connection went away (the
// publisher dropped, or the server closed), else the command that ended
// the publish ("FCUnpublish", "deleteStream", "closeStream", "republish").
// A Message that returns an error ends the connection (the sink's stream
// is gone).
type Sink interface {
	Message(m Message) error
	End(reason string)
}

// maxMessageStreams bounds a connection's message streams, the control
// stream included.
const maxMessageStreams = 8

// maxCreateStreams bounds the createStream commands of one connection.
const maxCreateStreams = 32

// Defaults of Config's limits.
const (
	DefaultMaxConns    = 64
	DefaultMaxAudio    = 64 << 10
	DefaultMaxVideo    = 8 << 20
	DefaultMaxData     = 64 << 10
	DefaultIdleTimeout = 30 * time.Second
	// DefaultHandshakeTimeout is generous for a publisher across the world
	// and short enough that slow clients free their slots.
	DefaultHandshakeTimeout = 10 * time.Second
)

// PublishInfo describes a publish request.
type PublishInfo struct {
	App, Name, TCURL string
	// Connect is the complete connect command object, custom keys included.
	Connect map[string]any
}

// Message is an audio (8), video (9) or AMF0 data (18) message.
type Message struct {
	Type      uint8
	Timestamp uint32
	Body      []byte // a copy, owned by the receiver
	// For data messages: the handler name ("onMetaData", "onCuePoint", ...)
	// after unwrapping "@setDataFrame", which SetDataFrame reports.
	Handler      string
	SetDataFrame bool
	// Values is the decoded AMF0 payload after the handler name: the value
	// itself when there is one, []any when there are several, nil when none.
	// ECMA arrays and objects decode to map[string]any, numbers to float64.
	Values any
}

// Reject refuses a publish with an RTMP status code, such as
// NetStream.Publish.BadName.
type Reject struct {
	Code        string
	Description string
}

func (r *Reject) Error() string { return "publish rejected: " + r.Code + ": " + r.Description }

// Server is an RTMP ingest server.
type Server struct {
	cfg Config
	log *slog.Logger
	ln  net.Listener
	srv *rtmp.Server

	mu     sync.Mutex
	closed bool
	conns  map[*tapConn]struct{}
	active map[string]bool // names being published
	wg     sync.WaitGroup  // one per tapped connection

	recBytes atomic.Int64 // bytes of the recordings in Dir
	refused  atomic.Int64 // connections closed at MaxConns

	quit      chan struct{}
	closeOnce sync.Once
}

// Listen opens the listening socket. Connections are accepted once Serve runs.
func Listen(cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxAudio == 0 {
		cfg.MaxAudio = DefaultMaxAudio
	}
	if cfg.MaxVideo == 0 {
		cfg.MaxVideo = DefaultMaxVideo
	}
	if cfg.MaxData == 0 {
		cfg.MaxData = DefaultMaxData
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	var used int64
	if cfg.Dir != "" && cfg.RecordingsMaxBytes > 0 {
		var err error
		if used, err = recordingsSize(cfg.Dir); err != nil {
			return nil, fmt.Errorf("rtmp ingest recordings: %w", err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("rtmp ingest listen %s: %w", cfg.Addr, err)
	}
	if cfg.TLS != nil {
		// The TLS handshake runs on the first Read, inside the tap's
		// handshake deadline.
		ln = tls.NewListener(ln, cfg.TLS)
	}
	s := &Server{
		cfg:    cfg,
		log:    log.With("component", "rtmp-ingest"),
		ln:     ln,
		conns:  make(map[*tapConn]struct{}),
		active: make(map[string]bool),
		quit:   make(chan struct{}),
	}
	s.recBytes.Store(used)
	s.srv = rtmp.NewServer(&rtmp.ServerConfig{OnConnect: s.onConnect})
	return s, nil
}

// Addr returns the listening address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve accepts connections until ctx ends or Close is called, then closes
// every connection and recording and returns once all of the server's
// goroutines have ended.
func (s *Server) Serve(ctx context.Context) error {
	s.log.Info("rtmp ingest listening", "addr", s.ln.Addr().String())
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(s.ln) }()
	select {
	case <-ctx.Done():
	case <-s.quit:
	case err := <-served:
		_ = s.Close()
		if err != nil && !errors.Is(err, rtmp.ErrClosed) {
			return fmt.Errorf("rtmp ingest serve: %w", err)
		}
		return nil
	}
	err := s.Close()
	<-served
	return err
}

// Close stops accepting, closes all connections and recordings and waits for
// their goroutines. It is idempotent.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.quit)
		_ = s.srv.Close()
		if cerr := s.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = fmt.Errorf("rtmp ingest close: %w", cerr)
		}
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			_ = c.Conn.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return err
}

func (s *Server) onConnect(nc net.Conn) (rwc io.ReadWriteCloser, cfg *rtmp.ConnConfig) {
	c := newTapConn(s, nc)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = nc.Close()
	} else if len(s.conns) >= s.cfg.MaxConns {
		s.mu.Unlock()
		n := s.refused.Add(1)
		_ = nc.Close()
		if n&(n-1) == 0 { // the 1st, 2nd, 4th, ...: no log flood
			s.log.Warn("rtmp ingest: connection limit reached, closing new connections", "max_conns", s.cfg.MaxConns, "refused", n)
		}
	} else {
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		c.tracked = true
		s.mu.Unlock()
	}
	return c, &rtmp.ConnConfig{
		Handler: &handler{c: c},
		// Publishers we tap might use message stream ids go-rtmp has not
		// created (after a rejected publish); drop those instead of failing.
		IgnoreMessagesOnNotExistStream:          true,
		IgnoreMessagesOnNotExistStreamThreshold: 16,
		// go-rtmp's default is 2^32 message streams, each createStream
		// scanning from 0 for a free id: a client sending createStream in a
		// loop grew memory without bound and spent quadratic CPU. A
		// publisher needs one (stream 0 is the control stream).
		ControlState: rtmp.StreamControlStateConfig{MaxMessageStreams: maxMessageStreams},
		// C2 need not echo S1: SRS's forward and other encoders answer
		// with the digest handshake or random bytes, and nginx-rtmp and
		// FFmpeg accept them. The echo proves nothing a TCP handshake did
		// not, and refusing it left those clients reset.
		SkipHandshakeVerification: true,
	}
}

func (s *Server) untrack(c *tapConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	if c.tracked {
		s.wg.Done()
	}
}

// claim marks name as being published; false when it already is. Names
// are claimed by the recording they would write, so that "cam?a" and
// "cam?b" do not share cam.flv.
func (s *Server) claim(name string) bool {
	name = sanitize(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active[name] {
		return false
	}
	s.active[name] = true
	return true
}

func (s *Server) release(name string) {
	name = sanitize(name)
	s.mu.Lock()
	delete(s.active, name)
	s.mu.Unlock()
}

// RefusedConns is the number of connections closed because MaxConns were
// open.
func (s *Server) RefusedConns() int64 { return s.refused.Load() }

// RecordingsBytes is the bytes of the recordings in Dir as counted against
// RecordingsMaxBytes (0 when there is no quota).
func (s *Server) RecordingsBytes() int64 { return s.recBytes.Load() }

// reserve counts n more bytes of recordings; false (and nothing counted)
// when they would pass the quota.
func (s *Server) reserve(n int64) bool {
	max := s.cfg.RecordingsMaxBytes
	if max <= 0 {
		return true
	}
	for {
		used := s.recBytes.Load()
		if used+n > max {
			return false
		}
		if s.recBytes.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

// recordingsSize sums the sizes of the *.flv files in dir.
func recordingsSize(dir string) (int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, err
	}
	var n int64
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".flv") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		n += info.Size()
	}
	return n, nil
}

// recordingPath is where a publish of name is recorded.
func recordingPath(dir, name string) string { return filepath.Join(dir, sanitize(name)+".flv") }
