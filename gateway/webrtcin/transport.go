package webrtcin

import (
	"fmt"
	"net"

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

// Transport is the one UDP socket every session's ICE runs on, and the pion
// settings that serve sessions on it.
type Transport struct {
	udp *net.UDPConn
	mux ice.UDPMux
	se  webrtc.SettingEngine
}

// Listen opens the ICE UDP port. ips, when not empty, are the addresses
// advertised as host candidates instead of the host's interfaces.
func Listen(port int, ips []net.IP) (*Transport, error) {
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{Port: port})
	if err != nil {
		return nil, fmt.Errorf("ice udp port %d: %w", port, err)
	}
	_ = udp.SetReadBuffer(socketBuffer)
	_ = udp.SetWriteBuffer(socketBuffer)
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	mux := webrtc.NewICEUDPMux(lf.NewLogger("ice"), udp)
	se := newSettingEngine(mux, udp.LocalAddr().(*net.UDPAddr).Port, ips)
	se.LoggerFactory = lf
	return &Transport{udp: udp, mux: mux, se: se}, nil
}

// Port is the UDP port ICE listens on (useful when configured as 0).
func (t *Transport) Port() int { return t.udp.LocalAddr().(*net.UDPAddr).Port }

// Close closes the mux and with it the socket. Sessions must be closed first.
func (t *Transport) Close() error { return t.mux.Close() }

// advertisedMux serves every session on one UDP socket and advertises the
// configured addresses as host candidates instead of every interface.
type advertisedMux struct {
	ice.UDPMux
	addrs []net.Addr
}

func (m advertisedMux) GetListenAddresses() []net.Addr { return m.addrs }

// newSettingEngine configures ICE for a single muxed UDP port. ips, when not
// empty, are the addresses advertised as host candidates (e.g. 127.0.0.1 for
// local use, or a public address in front of a 1:1 NAT).
func newSettingEngine(mux ice.UDPMux, port int, ips []net.IP) webrtc.SettingEngine {
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeQueryOnly)
	se.SetIncludeLoopbackCandidate(true)
	if len(ips) > 0 {
		addrs := make([]net.Addr, len(ips))
		for i, ip := range ips {
			addrs[i] = &net.UDPAddr{IP: ip, Port: port}
		}
		se.SetICEUDPMux(advertisedMux{UDPMux: mux, addrs: addrs})
	} else {
		se.SetICEUDPMux(mux)
	}
	return se
}
