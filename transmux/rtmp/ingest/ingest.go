// Package ingest is an in-process RTMP ingest server. castbridge runs one to
// record published streams to FLV files, and tests use it to observe exactly
// what a publisher sends.
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
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

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
	// OnMessage, when set, sees every audio, video and data message of an
	// accepted publish, in order, as received.
	OnMessage func(stream string, m Message)
	// OnCommand, when set, sees every command a client sends (connect,
	// releaseStream, FCPublish, createStream, publish, FCUnpublish,
	// deleteStream, ...). stream is the publish's name when the command
	// refers to one, else "".
	OnCommand func(stream string, command string)
	Logger    *slog.Logger
}

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

	quit      chan struct{}
	closeOnce sync.Once
}

// Listen opens the listening socket. Connections are accepted once Serve runs.
func Listen(cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("rtmp ingest listen %s: %w", cfg.Addr, err)
	}
	s := &Server{
		cfg:    cfg,
		log:    log.With("component", "rtmp-ingest"),
		ln:     ln,
		conns:  make(map[*tapConn]struct{}),
		active: make(map[string]bool),
		quit:   make(chan struct{}),
	}
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

// claim marks name as being published; false when it already is.
func (s *Server) claim(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active[name] {
		return false
	}
	s.active[name] = true
	return true
}

func (s *Server) release(name string) {
	s.mu.Lock()
	delete(s.active, name)
	s.mu.Unlock()
}
