package gatewaytest

import (
	"errors"
	"fmt"
	"math/rand"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RelayConfig configures a LossyRelay.
type RelayConfig struct {
	// DropRTP is the probability (0..1) of dropping an RTP packet sent by
	// the publisher, e.g. 0.02.
	DropRTP float64
	// ReorderRTP is the probability (0..1) of holding an RTP packet back and
	// sending it after the next one (or after 30 ms if none comes).
	ReorderRTP float64
	// Seed seeds the random choices, for reproducible runs.
	Seed int64
	// PayloadTypes, if not empty, limits dropping and reordering to RTP
	// packets of these payload types (e.g. only video).
	PayloadTypes []uint8
}

// LossyRelay is a UDP relay between a publisher and the gateway's ICE
// port, for loss tests over real UDP. The publisher sends to Addr (see
// RewriteAnswer); each publisher address gets its own upstream socket, which
// the gateway sees as a peer-reflexive candidate. Only SRTP media (RTP)
// packets from publisher to gateway are dropped or reordered: STUN, DTLS,
// RTCP and everything from the gateway pass untouched.
type LossyRelay struct {
	cfg      RelayConfig
	upstream *net.UDPAddr
	down     *net.UDPConn

	mu        sync.Mutex
	rng       *rand.Rand
	sessions  map[string]*relaySession
	closed    bool
	cut       bool // SetCut: everything from publishers is dropped
	cutDrops  int  // datagrams dropped while cut
	dropped   int
	reordered int
	forwarded int
	wg        sync.WaitGroup
}

type relaySession struct {
	client *net.UDPAddr
	up     *net.UDPConn
	held   []byte
	timer  *time.Timer
}

// NewLossyRelay starts a relay on 127.0.0.1 forwarding to upstream (the
// gateway's ICE UDP address, see CandidateAddr).
func NewLossyRelay(upstream *net.UDPAddr, cfg RelayConfig) (*LossyRelay, error) {
	if upstream == nil {
		return nil, errors.New("gatewaytest: relay needs an upstream address")
	}
	down, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	r := &LossyRelay{
		cfg: cfg, upstream: upstream, down: down,
		rng:      rand.New(rand.NewSource(cfg.Seed)),
		sessions: map[string]*relaySession{},
	}
	r.wg.Add(1)
	go r.readDown()
	return r, nil
}

// Addr is the address publishers send to.
func (r *LossyRelay) Addr() *net.UDPAddr { return r.down.LocalAddr().(*net.UDPAddr) }

// Dropped returns how many RTP packets were dropped.
func (r *LossyRelay) Dropped() int { r.mu.Lock(); defer r.mu.Unlock(); return r.dropped }

// Reordered returns how many RTP packets were sent after a later one.
func (r *LossyRelay) Reordered() int { r.mu.Lock(); defer r.mu.Unlock(); return r.reordered }

// Forwarded returns how many RTP packets from the publisher were forwarded
// (reordered ones included, dropped ones not). Other datagrams are not
// counted, so Dropped/(Dropped+Forwarded) is the loss rate.
func (r *LossyRelay) Forwarded() int { r.mu.Lock(); defer r.mu.Unlock(); return r.forwarded }

// SetCut cuts the publishers' network (on) or restores it (off): while
// cut, every datagram a publisher sends (STUN, DTLS, RTP, RTCP) is
// dropped, as when its uplink goes away; the gateway's datagrams still
// reach it.
func (r *LossyRelay) SetCut(on bool) {
	r.mu.Lock()
	r.cut = on
	r.mu.Unlock()
}

// CutDrops returns how many datagrams were dropped while cut.
func (r *LossyRelay) CutDrops() int { r.mu.Lock(); defer r.mu.Unlock(); return r.cutDrops }

// Close stops the relay and waits for its goroutines.
func (r *LossyRelay) Close() error {
	r.mu.Lock()
	r.closed = true
	err := r.down.Close()
	for _, s := range r.sessions {
		if s.timer != nil {
			s.timer.Stop()
		}
		_ = s.up.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return err
}

// RewriteAnswer replaces the ICE candidates of an SDP answer by one host
// candidate per media section with the relay's address, so the publisher
// sends everything to the relay. TCP candidates are removed.
func (r *LossyRelay) RewriteAnswer(sdp string) string {
	addr := r.Addr()
	eol := "\r\n"
	if !strings.Contains(sdp, "\r\n") {
		eol = "\n"
	}
	lines := strings.Split(strings.TrimRight(sdp, "\r\n"), eol)
	out := make([]string, 0, len(lines))
	wrote := false // a candidate already written in this media section
	for _, l := range lines {
		if strings.HasPrefix(l, "m=") {
			wrote = false
		}
		if !strings.HasPrefix(l, "a=candidate:") {
			out = append(out, l)
			continue
		}
		f := strings.Fields(l)
		if len(f) < 8 || !strings.EqualFold(f[2], "udp") || wrote {
			continue
		}
		f[4] = addr.IP.String()
		f[5] = strconv.Itoa(addr.Port)
		f[7] = "host"
		// drop raddr/rport of the original candidate
		kept := f[:8]
		for i := 8; i+1 < len(f); i += 2 {
			if f[i] == "raddr" || f[i] == "rport" {
				continue
			}
			kept = append(kept, f[i], f[i+1])
		}
		out = append(out, strings.Join(kept, " "))
		wrote = true
	}
	return strings.Join(out, eol) + eol
}

// CandidateAddr returns the address of the first UDP IPv4 ICE candidate in
// an SDP, preferring 127.0.0.1: the gateway's ICE port to give a
// LossyRelay.
func CandidateAddr(sdp string) (*net.UDPAddr, error) {
	var first *net.UDPAddr
	for _, l := range strings.Split(sdp, "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "a=candidate:") {
			continue
		}
		f := strings.Fields(l)
		if len(f) < 8 || !strings.EqualFold(f[2], "udp") {
			continue
		}
		ip := net.ParseIP(f[4]).To4()
		port, err := strconv.Atoi(f[5])
		if ip == nil || err != nil {
			continue
		}
		a := &net.UDPAddr{IP: ip, Port: port}
		if ip.IsLoopback() {
			return a, nil
		}
		if first == nil {
			first = a
		}
	}
	if first == nil {
		return nil, fmt.Errorf("gatewaytest: no UDP IPv4 candidate in SDP")
	}
	return first, nil
}

// rtpPayloadType returns the payload type of an RTP packet, and false for
// anything else (STUN 0-3, DTLS 20-63, RTCP with packet type 192-223; RFC
// 7983 and RFC 5761).
func rtpPayloadType(b []byte) (uint8, bool) {
	if len(b) < 12 || b[0] < 128 || b[0] > 191 {
		return 0, false
	}
	if b[1] >= 192 && b[1] <= 223 {
		return 0, false
	}
	return b[1] & 0x7f, true
}

func (r *LossyRelay) affects(pt uint8) bool {
	if len(r.cfg.PayloadTypes) == 0 {
		return true
	}
	for _, p := range r.cfg.PayloadTypes {
		if p == pt {
			return true
		}
	}
	return false
}

func (r *LossyRelay) readDown() {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := r.down.ReadFromUDP(buf)
		if err != nil {
			return
		}
		pkt := append([]byte(nil), buf[:n]...)
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return
		}
		s := r.sessions[from.String()]
		if s == nil {
			up, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, r.upstream)
			if err != nil {
				r.mu.Unlock()
				continue
			}
			s = &relaySession{client: from, up: up}
			r.sessions[from.String()] = s
			r.wg.Add(1)
			go r.readUp(s)
		}
		if r.cut {
			r.cutDrops++
			r.mu.Unlock()
			continue
		}
		pt, isRTP := rtpPayloadType(pkt)
		if !isRTP || !r.affects(pt) {
			if isRTP {
				r.forwarded++
			}
			r.mu.Unlock()
			_, _ = s.up.Write(pkt)
			continue
		}
		if r.cfg.DropRTP > 0 && r.rng.Float64() < r.cfg.DropRTP {
			r.dropped++
			r.mu.Unlock()
			continue
		}
		r.forwarded++
		if s.held == nil && r.cfg.ReorderRTP > 0 && r.rng.Float64() < r.cfg.ReorderRTP {
			s.held = pkt
			s.timer = time.AfterFunc(30*time.Millisecond, func() { r.flushHeld(s, false) })
			r.mu.Unlock()
			continue
		}
		_, _ = s.up.Write(pkt)
		r.mu.Unlock()
		r.flushHeld(s, true)
	}
}

// flushHeld sends the held packet, if any; overtaken tells whether a later
// packet went out before it.
func (r *LossyRelay) flushHeld(s *relaySession, overtaken bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.held == nil || r.closed {
		return
	}
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	_, _ = s.up.Write(s.held)
	s.held = nil
	if overtaken {
		r.reordered++
	}
}

func (r *LossyRelay) readUp(s *relaySession) {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := s.up.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			r.mu.Lock()
			closed := r.closed
			r.mu.Unlock()
			if closed {
				return
			}
			// ICMP port unreachable from a gateway not (yet) listening
			// surfaces as a read error on a connected socket: keep going.
			time.Sleep(5 * time.Millisecond)
			continue
		}
		_, _ = r.down.WriteToUDP(buf[:n], s.client)
	}
}
