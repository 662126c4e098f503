package webrtcin

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v2"
	"github.com/pion/logging"
	"github.com/pion/transport/v2"
	"github.com/pion/transport/v2/stdnet"
)

// Bounds of passive ICE-TCP. pion's TCP mux has none of its own on the
// number of connections or on a connection that goes quiet once it has
// sent its first STUN request, so the listener adds them.
const (
	// defaultMaxTCPConns caps open ICE-TCP connections; one publisher
	// opens one per local address it tries.
	defaultMaxTCPConns = 1024
	// tcpFirstSTUN is how long a new connection has to send its first
	// STUN binding request (a real ICE agent sends it at once).
	tcpFirstSTUN = 5 * time.Second
	// tcpUnknownUfrag is how long a connection whose STUN names no
	// session the gateway made is kept.
	tcpUnknownUfrag = 10 * time.Second
	// tcpIdle closes a connection nothing arrived on for this long: a
	// publisher's ICE agent sends a binding request every few seconds
	// (consent freshness), beside the media.
	tcpIdle = 30 * time.Second
	// tcpReadPackets is the per-session queue of received packets
	// between the connection's reader and ICE.
	tcpReadPackets = 64
	// tcpWriteBuffer bounds what waits to be written per connection; the
	// gateway sends little (DTLS, RTCP, STUN), and pion drops packets
	// beyond it rather than block.
	tcpWriteBuffer = 128 << 10
)

type tcpTransport struct {
	ln  *limitListener
	mux ice.TCPMux
}

// listenTCP opens the ICE-TCP port (dual-stack when ipv6) and pion's TCP
// mux on it. With advertised IPs the mux files every connection under its
// family's wildcard address rather than the address it arrived on: the
// candidates carry the advertised addresses, which need not be local
// (1:1 NAT), so the arrival address cannot name the session's conn.
func listenTCP(cfg ListenConfig, ipv6 bool, plog logging.LeveledLogger, log *slog.Logger) (*tcpTransport, error) {
	network := "tcp4"
	if ipv6 {
		network = "tcp"
	}
	port := max(cfg.TCPPort, 0)
	ln, err := net.Listen(network, fmt.Sprintf(":%d", port))
	if err != nil {
		return nil, fmt.Errorf("ice tcp port %d: %w", port, err)
	}
	maxConns := cfg.MaxTCPConns
	if maxConns <= 0 {
		maxConns = defaultMaxTCPConns
	}
	ll := &limitListener{Listener: ln, slots: make(chan struct{}, maxConns), idle: tcpIdle, wildcard: len(cfg.IPs) > 0, log: log}
	mux := ice.NewTCPMuxDefault(ice.TCPMuxParams{
		Listener:                     ll,
		Logger:                       plog,
		ReadBufferSize:               tcpReadPackets,
		WriteBufferSize:              tcpWriteBuffer,
		FirstStunBindTimeout:         tcpFirstSTUN,
		AliveDurationForConnFromStun: tcpUnknownUfrag,
	})
	t := &tcpTransport{ln: ll, mux: mux}
	if ll.wildcard {
		t.mux = wildcardTCPMux{mux}
	}
	return t, nil
}

func (t *tcpTransport) port() int { return t.ln.Addr().(*net.TCPAddr).Port }

func (t *tcpTransport) close() error { return t.mux.Close() }

// advertised is the network pion gathers TCP host candidates from: the
// host's, but with the advertised addresses as its only interface.
func (t *tcpTransport) advertised(ips []net.IP) transport.Net {
	std, err := stdnet.NewNet()
	if err != nil {
		// stdnet fails only listing interfaces, which advertisedNet
		// replaces; its other methods do not use the list.
		std = &stdnet.Net{}
	}
	ifc := transport.NewInterface(net.Interface{Index: 1, MTU: 1500, Name: "advertised", Flags: net.FlagUp})
	for _, ip := range ips {
		bits := 8 * len(ip)
		ifc.AddAddress(&net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
	}
	return advertisedNet{Net: std, ifaces: []*transport.Interface{ifc}}
}

type advertisedNet struct {
	transport.Net
	ifaces []*transport.Interface
}

func (n advertisedNet) Interfaces() ([]*transport.Interface, error) { return n.ifaces, nil }

// wildcardTCPMux asks pion's mux for a session's conn under its family's
// wildcard address, whatever address the candidate advertises (see
// limitListener.wildcard).
type wildcardTCPMux struct{ *ice.TCPMuxDefault }

func (m wildcardTCPMux) GetConnByUfrag(ufrag string, isIPv6 bool, _ net.IP) (net.PacketConn, error) {
	return m.TCPMuxDefault.GetConnByUfrag(ufrag, isIPv6, wildcardIP(isIPv6))
}

func wildcardIP(v6 bool) net.IP {
	if v6 {
		return net.IPv6unspecified
	}
	return net.IPv4zero.To4()
}

// limitListener bounds ICE-TCP: at most cap(slots) connections at once
// (beyond that a new one is closed at once), and a read deadline on every
// connection so that a quiet one ends.
type limitListener struct {
	net.Listener
	slots    chan struct{}
	idle     time.Duration
	wildcard bool // report the family's wildcard as the local address
	log      *slog.Logger
	refused  atomic.Uint64
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
		default:
			if n := l.refused.Add(1); n&(n-1) == 0 { // 1, 2, 4, ...: no log flood
				l.log.Warn("ICE-TCP connection refused: at the connection limit", "limit", cap(l.slots), "refused", n, "remote", c.RemoteAddr().String())
			}
			_ = c.Close()
			continue
		}
		lc := &limitConn{Conn: c, l: l}
		if l.wildcard {
			la := *c.LocalAddr().(*net.TCPAddr)
			la.IP = wildcardIP(la.IP.To4() == nil)
			lc.local = &la
		}
		return lc, nil
	}
}

// limitConn holds a slot of its listener until closed, and keeps a read
// deadline: pion's own (the first STUN request's) while it has one set,
// otherwise the listener's idle time from the last read.
type limitConn struct {
	net.Conn
	l     *limitListener
	local net.Addr // nil: the connection's own

	mu         sync.Mutex
	explicit   bool      // pion set a deadline of its own
	idleUntil  time.Time // the idle deadline last set
	closeOnce  sync.Once
	releaseErr error
}

func (c *limitConn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return c.Conn.LocalAddr()
}

func (c *limitConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.explicit = !t.IsZero()
	c.idleUntil = time.Time{}
	c.mu.Unlock()
	if t.IsZero() {
		t = time.Now().Add(c.l.idle)
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *limitConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if !c.explicit {
		// Push the deadline on at most every quarter of the idle time:
		// a read per packet must not cost a timer reset each.
		now := time.Now()
		if c.idleUntil.Sub(now) < c.l.idle*3/4 {
			c.idleUntil = now.Add(c.l.idle)
			_ = c.Conn.SetReadDeadline(c.idleUntil)
		}
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}

func (c *limitConn) Close() error {
	c.closeOnce.Do(func() {
		c.releaseErr = c.Conn.Close()
		<-c.l.slots
	})
	return c.releaseErr
}
