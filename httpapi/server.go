package httpapi

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Limits bound what one HTTP client can hold. Zero values take the defaults.
type Limits struct {
	// ReadHeaderTimeout bounds a request's headers, ReadTimeout the whole
	// request with its body (SDP and JSON bodies are at most 1 MiB).
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	// WriteTimeout bounds a response. The event stream (SSE) sets its own
	// deadline per event instead.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection with no request.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes int
	// MaxConns caps the connections open at once; past it new ones are
	// closed at once.
	MaxConns int
}

// Defaults: a WHIP POST waits for ICE gathering (up to 10 s) and a
// broadcast start for the ingests' publish (up to the publish timeout), so
// responses get 30 s.
const (
	defaultReadHeaderTimeout = 10 * time.Second
	defaultReadTimeout       = 30 * time.Second
	defaultWriteTimeout      = 30 * time.Second
	defaultIdleTimeout       = 60 * time.Second
	defaultMaxHeaderBytes    = 16 << 10
	// DefaultMaxConns is the default cap on open HTTP connections.
	DefaultMaxConns = 1024
)

func (l *Limits) setDefaults() {
	or := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	or(&l.ReadHeaderTimeout, defaultReadHeaderTimeout)
	or(&l.ReadTimeout, defaultReadTimeout)
	or(&l.WriteTimeout, defaultWriteTimeout)
	or(&l.IdleTimeout, defaultIdleTimeout)
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = defaultMaxHeaderBytes
	}
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
}

// NewServer returns the http.Server for h with the limits set. Serve it on
// a listener from LimitListener.
func NewServer(h http.Handler, l Limits) *http.Server {
	l.setDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
	}
}

// LimitListener caps the connections ln hands out at l.MaxConns: one over
// the cap is closed as soon as it is accepted, so a flood of idle sockets
// cannot pin the process, and the ones already open keep being served.
func LimitListener(ln net.Listener, l Limits) net.Listener {
	l.setDefaults()
	return &limitListener{Listener: ln, max: l.MaxConns}
}

type limitListener struct {
	net.Listener
	max int

	mu   sync.Mutex
	open int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.open >= l.max {
			l.mu.Unlock()
			_ = c.Close()
			continue
		}
		l.open++
		l.mu.Unlock()
		return &limitedConn{Conn: c, l: l}, nil
	}
}

type limitedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
