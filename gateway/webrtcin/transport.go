package webrtcin

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/pion/ice/v2"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v3"
)

// socketBuffer is the receive and send buffer asked for the ICE socket.
// One socket carries every session's media: the kernel's default receive
// buffer (~208 KiB, ~90 packets) overflows in bursts at tens of streams,
// which showed as loss in the load test. The kernel caps it at
// net.core.rmem_max.
const socketBuffer = 8 << 20

// ListenConfig says where ICE listens and what it advertises.
type ListenConfig struct {
	// UDPPort is the one UDP port every session's ICE runs on; 0 picks a
	// free one. IPv6 is served on the same port number beside IPv4.
	UDPPort int
	// TCPPort is the one TCP port of passive ICE-TCP (RFC 6544 framing,
	// pion's TCP mux), for publishers whose networks block UDP. 0 is no
	// ICE-TCP; a negative port picks a free one.
	TCPPort int
	// IPs, when not empty, are the addresses advertised as host candidates
	// (UDP and TCP) instead of the host's interfaces. IPv6 is served when
	// IPs has an IPv6 address, or, with no IPs, when the host has IPv6.
	IPs []net.IP
	// STUNServer (host:port), when set and IPs is empty, is asked through
	// the IPv4 UDP socket for the gateway's public address, which answers
	// then carry as a srflx candidate on the same port (IPs, when given,
	// are the public addresses and STUN is not asked). STUNTimeout bounds
	// one query (0: 3 s); STUNRefresh is how often the address is asked
	// again (0: 25 s).
	STUNServer  string
	STUNTimeout time.Duration
	STUNRefresh time.Duration
	// MaxTCPConns caps the ICE-TCP connections open at once; 0 means
	// defaultMaxTCPConns.
	MaxTCPConns int
	// ICEDisconnectedTimeout is how long ICE hears nothing from a
	// publisher before it reports disconnected; 0 means pion's 5 s.
	// Failed follows 25 s later (pion's default).
	ICEDisconnectedTimeout time.Duration
	// NoFastPath keeps every RTP packet on pion's receive path instead of
	// the SRTP fast path (fastpath.go): for comparison, or should a peer's
	// DTLS be one the fast path misreads (it then falls back by itself).
	NoFastPath bool
	// ReadCoalesce is how long the UDP sockets' reader waits, after a
	// recvmmsg batch of more than one datagram but less than a full one,
	// before it reads again: the datagrams that arrive meanwhile come in
	// one call instead of a wake-up and a call each (0: read again at
	// once). Linux only.
	ReadCoalesce time.Duration
	Logger       *slog.Logger
}

// iceFailedAfter and iceKeepalive are pion's defaults, given again when
// the disconnected timeout is set (pion takes the three together).
const (
	iceFailedAfter = 25 * time.Second
	iceKeepalive   = 2 * time.Second
)

// Transport is the sockets every session's ICE runs on (one UDP port for
// IPv4 and IPv6, and optionally one TCP port), and the pion settings that
// serve sessions on them.
type Transport struct {
	udp4, udp6 *net.UDPConn      // udp6 is nil without IPv6
	readers    []*cachedAddrConn // how the mux reads them
	mux        ice.UDPMux
	tcp        *tcpTransport // nil without ICE-TCP
	stun       *reflexive    // nil without STUN
	fast       *fastTable    // nil with NoFastPath
	se         webrtc.SettingEngine
}

// Listen opens the ICE ports.
func Listen(cfg ListenConfig) (*Transport, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	want6 := false
	for _, ip := range cfg.IPs {
		if ip.To4() == nil {
			want6 = true
		}
	}

	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	plog := lf.NewLogger("ice")

	t := &Transport{}
	if !cfg.NoFastPath {
		t.fast = &fastTable{warmEvery: warmInterval(cfg.ICEDisconnectedTimeout)}
	}
	// The IPv4 socket is always opened: it fixes the port number when
	// UDPPort is 0, and IPv6 takes the same number.
	udp4, err := net.ListenUDP("udp4", &net.UDPAddr{Port: cfg.UDPPort})
	if err != nil {
		return nil, fmt.Errorf("ice udp port %d: %w", cfg.UDPPort, err)
	}
	t.udp4 = udp4
	port := udp4.LocalAddr().(*net.UDPAddr).Port
	// IPv6 when an advertised address asks for it, or, advertising the
	// interfaces, when the host has it. "udp6" on the wildcard address is
	// IPV6_V6ONLY in Go, so it shares the port number with the IPv4 socket.
	if want6 || len(cfg.IPs) == 0 {
		udp6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6unspecified, Port: port})
		switch {
		case err == nil:
			t.udp6 = udp6
		case want6:
			_ = udp4.Close()
			return nil, fmt.Errorf("ice udp port %d over IPv6 (an advertised IP is IPv6): %w", port, err)
		default:
			log.Warn("ICE serves IPv4 only: no IPv6 UDP socket", "port", port, "err", err)
		}
	}
	useSTUN := cfg.STUNServer != "" && len(cfg.IPs) == 0
	if cfg.STUNServer != "" && !useSTUN {
		log.Warn("STUN not asked: the advertised addresses (--ice-ips) are the public ones", "stun", cfg.STUNServer)
	}
	var muxes familyMux
	var networks []webrtc.NetworkType
	var stunClient *stunConn
	for _, c := range []*net.UDPConn{t.udp4, t.udp6} {
		if c == nil {
			continue
		}
		_ = c.SetReadBuffer(socketBuffer)
		_ = c.SetWriteBuffer(socketBuffer)
		var stun *stunConn // its answers are taken out of what pion's mux reads
		if c == t.udp4 && useSTUN {
			stunClient = newSTUNConn(c)
			stun = stunClient
		}
		cc := newCachedAddrConn(c, cfg.ReadCoalesce)
		t.readers = append(t.readers, cc)
		m := ice.NewUDPMuxDefault(ice.UDPMuxParams{Logger: plog, UDPConn: socketReader(cc, t.fast, stun)})
		if c == t.udp4 {
			muxes.v4 = m
			networks = append(networks, webrtc.NetworkTypeUDP4)
		} else {
			muxes.v6 = m
			networks = append(networks, webrtc.NetworkTypeUDP6)
		}
	}
	if len(cfg.IPs) > 0 {
		for _, ip := range cfg.IPs {
			muxes.addrs = append(muxes.addrs, &net.UDPAddr{IP: ip, Port: port})
		}
	} else {
		muxes.addrs = muxes.listenAddresses()
	}
	t.mux = muxes

	var se webrtc.SettingEngine
	se.LoggerFactory = lf
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeQueryOnly)
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEUDPMux(t.mux)
	if cfg.ICEDisconnectedTimeout > 0 {
		se.SetICETimeouts(cfg.ICEDisconnectedTimeout, iceFailedAfter, iceKeepalive)
	}
	if cfg.TCPPort != 0 {
		t.tcp, err = listenTCP(cfg, t.udp6 != nil, plog, log)
		if err != nil {
			_ = t.mux.Close()
			return nil, err
		}
		se.SetICETCPMux(t.tcp.mux)
		// Passive only: the gateway never dials publishers.
		se.DisableActiveTCP(true)
		networks = append(networks, webrtc.NetworkTypeTCP4)
		if t.udp6 != nil {
			networks = append(networks, webrtc.NetworkTypeTCP6)
		}
		if len(cfg.IPs) > 0 {
			// TCP host candidates come from the interfaces pion sees:
			// it sees the advertised addresses.
			se.SetNet(t.tcp.advertised(cfg.IPs))
		}
	}
	se.SetNetworkTypes(networks)
	t.se = se
	if useSTUN {
		t.stun = &reflexive{
			server:  cfg.STUNServer,
			conn:    stunClient,
			base:    srflxBase(muxes.v4.GetListenAddresses(), port),
			timeout: cmp.Or(cfg.STUNTimeout, defaultSTUNTimeout),
			every:   cmp.Or(cfg.STUNRefresh, defaultSTUNRefresh),
			log:     log,
		}
		t.stun.start()
	}
	return t, nil
}

// srflxBase is the related address of the srflx candidate: the socket
// listens on every interface, so the first non-loopback IPv4 one it
// serves stands for its base (RFC 8445 §5.1.1.2 wants one address).
func srflxBase(addrs []net.Addr, port int) netip.AddrPort {
	var first netip.Addr
	for _, a := range addrs {
		ua, ok := a.(*net.UDPAddr)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ua.IP)
		if !ok || !ip.Unmap().Is4() {
			continue
		}
		ip = ip.Unmap()
		if !ip.IsLoopback() {
			return netip.AddrPortFrom(ip, uint16(port))
		}
		if !first.IsValid() {
			first = ip
		}
	}
	if !first.IsValid() {
		first = netip.IPv4Unspecified()
	}
	return netip.AddrPortFrom(first, uint16(port))
}

// STUN is what the transport learned from its STUN server (the zero
// STUNStatus without one).
func (t *Transport) STUN() STUNStatus { return t.stun.status() }

// Port is the UDP port ICE listens on (useful when configured as 0).
func (t *Transport) Port() int { return t.udp4.LocalAddr().(*net.UDPAddr).Port }

// TCPPort is the ICE-TCP port, 0 when ICE-TCP is off.
func (t *Transport) TCPPort() int {
	if t.tcp == nil {
		return 0
	}
	return t.tcp.port()
}

// IPv6 reports whether ICE serves IPv6 on UDP.
func (t *Transport) IPv6() bool { return t.udp6 != nil }

// Close closes the muxes and with them the sockets. Sessions must be closed
// first.
func (t *Transport) Close() error {
	if t.stun != nil {
		t.stun.stop()
	}
	err := t.mux.Close()
	if t.tcp != nil {
		err = errors.Join(err, t.tcp.close())
	}
	return err
}

// socketReader is how pion's UDP mux reads an ICE socket: in recvmmsg
// batches where the system has them, the fast path's and the STUN
// client's datagrams taken out first when there are those (either may be
// nil).
func socketReader(cc *cachedAddrConn, fast *fastTable, stun *stunConn) net.PacketConn {
	if fast == nil && stun == nil {
		return cc
	}
	return newDivertConn(cc, fast, stun)
}

// OversizedDatagrams counts the datagrams the ICE UDP sockets dropped for
// being over 4 KiB (no publisher's ICE, DTLS or media is; recvmmsg
// batches only).
func (t *Transport) OversizedDatagrams() uint64 {
	var n uint64
	for _, cc := range t.readers {
		if cc.batch != nil {
			n += cc.batch.truncated.Load()
		}
	}
	return n
}

// familyMux serves every session on the IPv4 and the IPv6 UDP socket of
// one port, and advertises addrs as its host candidates. pion's
// MultiUDPMuxDefault routes by listen address, which a mux on the IPv6
// wildcard lists for both families; this one routes by family.
type familyMux struct {
	v4, v6 ice.UDPMux // v6 may be nil
	addrs  []net.Addr
}

func (m familyMux) muxFor(addr net.Addr) ice.UDPMux {
	if a, ok := addr.(*net.UDPAddr); ok && a.IP.To4() == nil {
		return m.v6
	}
	return m.v4
}

func (m familyMux) GetConn(ufrag string, addr net.Addr) (net.PacketConn, error) {
	mux := m.muxFor(addr)
	if mux == nil {
		return nil, fmt.Errorf("ice: no IPv6 socket for %s", addr)
	}
	return mux.GetConn(ufrag, addr)
}

func (m familyMux) RemoveConnByUfrag(ufrag string) {
	m.v4.RemoveConnByUfrag(ufrag)
	if m.v6 != nil {
		m.v6.RemoveConnByUfrag(ufrag)
	}
}

func (m familyMux) GetListenAddresses() []net.Addr { return m.addrs }

// listenAddresses are the host's interface addresses on the mux's port:
// IPv4 from the IPv4 mux, IPv6 from the IPv6 one (which lists both).
func (m familyMux) listenAddresses() []net.Addr {
	out := m.v4.GetListenAddresses()
	if m.v6 != nil {
		for _, a := range m.v6.GetListenAddresses() {
			if ua, ok := a.(*net.UDPAddr); ok && ua.IP.To4() == nil {
				out = append(out, a)
			}
		}
	}
	return out
}

func (m familyMux) Close() error {
	err := m.v4.Close()
	if m.v6 != nil {
		err = errors.Join(err, m.v6.Close())
	}
	return err
}
