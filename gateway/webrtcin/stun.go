package webrtcin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v2"
	"github.com/pion/sdp/v3"
	"github.com/pion/stun"
)

// The STUN client's timings. NAT UDP mappings last 30 s on the meanest
// home routers (RFC 4787 asks for 2 min and more): a query every 25 s
// (pion's own srflx cache lifetime) both notices a changed mapping and,
// with no session on the port, keeps it open. A query retransmits after
// 500 ms, doubling (RFC 8489 §6.2.1), until its timeout.
const (
	defaultSTUNTimeout = 3 * time.Second
	defaultSTUNRefresh = 25 * time.Second
	stunFirstRTO       = 500 * time.Millisecond
)

// STUNStatus is what the transport learned from its STUN server.
type STUNStatus struct {
	Server string // host:port as configured; "" when STUN is off
	// Mapped is the public address last learned (the zero AddrPort before
	// the first answer). It stays advertised while queries fail: a stale
	// srflx candidate costs the publisher one failed pair, a missing one
	// may cost it the connection.
	Mapped   netip.AddrPort
	Up       bool   // the last query was answered
	Queries  uint64 // queries made
	Failures uint64 // queries that got no usable answer
}

// reflexive keeps the IPv4 ICE socket's public address, learned from a
// STUN server through that very socket (so it is the mapping publishers
// reach), fresh, and makes the srflx candidate answers carry.
type reflexive struct {
	server  string
	conn    *stunConn
	base    netip.AddrPort // the candidate's related address
	timeout time.Duration
	every   time.Duration
	log     *slog.Logger

	mu         sync.Mutex
	mapped     netip.AddrPort
	up         bool
	candidates []string // a=candidate values for components 1 and 2; nil before an answer

	queries, failures atomic.Uint64

	cancel context.CancelFunc
	done   chan struct{}
}

// start asks the server once, synchronously (bounded by the timeout), so
// the startup log says what the gateway advertises, then keeps the address
// fresh on its own goroutine until stop.
func (r *reflexive) start() {
	r.refresh(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go r.run(ctx)
}

func (r *reflexive) run(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.refresh(ctx)
		}
	}
}

// stop ends and joins the refresher.
func (r *reflexive) stop() {
	r.cancel()
	<-r.done
}

func (r *reflexive) refresh(ctx context.Context) {
	addr, err := r.conn.query(ctx, r.server, r.timeout)
	r.queries.Add(1)
	if ctx.Err() != nil {
		return // closing
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	wasUp, prev := r.up, r.mapped
	if err != nil {
		n := r.failures.Add(1)
		r.up = false
		switch {
		case !wasUp && !prev.IsValid() && n == 1: // once: later ones every 25 s would flood the log
			r.log.Warn("STUN server gave no public address: answers carry host candidates only", "stun", r.server, "timeout", r.timeout, "err", err)
		case wasUp:
			r.log.Warn("STUN server stopped answering: the last public address stays advertised", "stun", r.server, "public_addr", prev.String(), "err", err)
		default:
			r.log.Debug("STUN query failed", "stun", r.server, "err", err)
		}
		return
	}
	r.up = true
	if addr == prev {
		if !wasUp {
			r.log.Info("STUN server answers again", "stun", r.server, "public_addr", addr.String())
		}
		return
	}
	cands, err := srflxCandidates(addr, r.base)
	if err != nil {
		r.log.Warn("STUN: cannot make a srflx candidate", "public_addr", addr.String(), "err", err)
		return
	}
	r.mapped, r.candidates = addr, cands
	if prev.IsValid() {
		r.log.Info("public address changed (STUN)", "stun", r.server, "public_addr", addr.String(), "was", prev.String())
	} else {
		r.log.Info("public address learned (STUN): answers carry it as a srflx candidate", "stun", r.server, "public_addr", addr.String(), "base", r.base.String())
	}
}

// status is the current STUNStatus; the zero one on a nil reflexive.
func (r *reflexive) status() STUNStatus {
	if r == nil {
		return STUNStatus{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return STUNStatus{Server: r.server, Mapped: r.mapped, Up: r.up, Queries: r.queries.Load(), Failures: r.failures.Load()}
}

// srflx is the a=candidate values to add to an answer, nil when there is
// no public address (or no STUN).
func (r *reflexive) srflx() []string {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.candidates
}

// srflxCandidates are the srflx candidate lines (RTP and RTCP component,
// as pion writes its own) for a public address, with pion's priority and
// foundation.
func srflxCandidates(mapped, base netip.AddrPort) ([]string, error) {
	var out []string
	// 1 and 2, not ice.ComponentRTP and ice.ComponentRTCP: in pion/ice
	// v2.3.38 ComponentRTCP repeats ComponentRTP's "uint16 = 1" (a const
	// block without iota), so both are 1.
	for _, comp := range []uint16{1, 2} {
		c, err := ice.NewCandidateServerReflexive(&ice.CandidateServerReflexiveConfig{
			Network:   "udp",
			Address:   mapped.Addr().String(),
			Port:      int(mapped.Port()),
			Component: comp,
			RelAddr:   base.Addr().String(),
			RelPort:   int(base.Port()),
		})
		if err != nil {
			return nil, err
		}
		out = append(out, c.Marshal())
	}
	return out, nil
}

// stunConn is the gateway's STUN client on the IPv4 ICE socket: it sends
// the queries, and the socket's reader (divertConn) hands it every
// datagram before pion's UDP mux sees it, so that the responses to its
// queries are taken out (they answer no ICE agent); every other packet
// passes untouched.
type stunConn struct {
	sock    *net.UDPConn
	waiting atomic.Int32 // queries in flight: with none, nothing is looked at

	mu      sync.Mutex
	pending map[[stun.TransactionIDSize]byte]stunWait
}

type stunWait struct {
	server netip.AddrPort
	answer chan stunAnswer // buffered: the read loop never waits
}

type stunAnswer struct {
	mapped netip.AddrPort
	err    error
}

func newSTUNConn(c *net.UDPConn) *stunConn {
	return &stunConn{sock: c, pending: map[[stun.TransactionIDSize]byte]stunWait{}}
}

// take delivers b to the query it answers, if any, and says whether it
// did. b is only read.
func (c *stunConn) take(b []byte, from netip.AddrPort) bool {
	if c.waiting.Load() == 0 || !stun.IsMessage(b) {
		return false
	}
	// An IPv4 socket may report a 4-in-6 address.
	src := netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	// Only an answer to a query of ours, from the server asked, is
	// parsed: the transaction id is bytes 8-20 of any STUN header.
	var id [stun.TransactionIDSize]byte
	copy(id[:], b[8:20])
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.pending[id]
	if !ok || w.server != src {
		return false
	}
	_, mapped, err := parseBindingResponse(b)
	if errors.Is(err, errNotBindingResponse) {
		return false
	}
	// Deleted with the one send: the buffered channel never fills.
	delete(c.pending, id)
	w.answer <- stunAnswer{mapped: mapped, err: err}
	return true
}

var errNotBindingResponse = errors.New("not a STUN binding response")

// parseBindingResponse decodes a STUN binding response (RFC 8489): its
// transaction id, and the IPv4 mapped address (XOR-MAPPED-ADDRESS, or
// MAPPED-ADDRESS of RFC 3489 servers) or the error it carries. Input is a
// datagram, bounded by the socket's read buffer.
func parseBindingResponse(b []byte) (id [stun.TransactionIDSize]byte, mapped netip.AddrPort, err error) {
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil {
		return id, mapped, fmt.Errorf("%w: %v", errNotBindingResponse, err)
	}
	id = m.TransactionID
	switch m.Type {
	case stun.BindingSuccess:
	case stun.BindingError:
		var code stun.ErrorCodeAttribute
		if err := code.GetFrom(m); err != nil {
			return id, mapped, errors.New("binding error response without an error code")
		}
		return id, mapped, fmt.Errorf("binding error %d %q", code.Code, code.Reason)
	default:
		return id, mapped, errNotBindingResponse
	}
	var ip net.IP
	var port int
	var xor stun.XORMappedAddress
	// pion/stun v0.6.1 reads an XOR-MAPPED-ADDRESS's family before it
	// checks the value's length: one under 2 bytes panicked the socket's
	// reader (FuzzParseBindingResponse found it). An IPv4 value is 8 bytes.
	if v, err := m.Get(stun.AttrXORMappedAddress); err == nil && len(v) >= 8 && xor.GetFrom(m) == nil {
		ip, port = xor.IP, xor.Port
	} else {
		var plain stun.MappedAddress
		if err := plain.GetFrom(m); err != nil {
			return id, mapped, errors.New("binding response without a mapped address")
		}
		ip, port = plain.IP, plain.Port
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok || !a.Unmap().Is4() || a.IsUnspecified() || port <= 0 || port > 65535 {
		return id, mapped, fmt.Errorf("binding response maps to %s port %d, not an IPv4 address", ip, port)
	}
	return id, netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
}

// query asks server (host:port; the host resolved to IPv4 now, so a name
// that moves is followed) for this socket's mapped address, within
// timeout, retransmitting as RFC 8489 says.
func (c *stunConn) query(ctx context.Context, server string, timeout time.Duration) (netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	host, portStr, err := net.SplitHostPort(server)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, fmt.Errorf("port %q is not a port", portStr)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: no IPv4 address", host)
	}
	dst := netip.AddrPortFrom(ips[0].Unmap(), uint16(port))
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return netip.AddrPort{}, err
	}
	w := stunWait{server: dst, answer: make(chan stunAnswer, 1)}
	c.mu.Lock()
	c.pending[req.TransactionID] = w
	c.mu.Unlock()
	c.waiting.Add(1)
	defer func() {
		c.waiting.Add(-1)
		c.mu.Lock()
		delete(c.pending, req.TransactionID)
		c.mu.Unlock()
	}()
	rto := stunFirstRTO
	timer := time.NewTimer(0)
	defer timer.Stop()
	sent := 0
	for {
		select {
		case a := <-w.answer:
			if a.err != nil {
				return netip.AddrPort{}, fmt.Errorf("stun %s (%s): %w", server, dst, a.err)
			}
			return a.mapped, nil
		case <-timer.C:
			if _, err := c.sock.WriteToUDPAddrPort(req.Raw, dst); err != nil {
				return netip.AddrPort{}, fmt.Errorf("stun %s (%s): send: %w", server, dst, err)
			}
			sent++
			timer.Reset(rto)
			rto *= 2
		case <-ctx.Done():
			return netip.AddrPort{}, fmt.Errorf("stun %s (%s): no answer to %d requests in %v", server, dst, sent, timeout)
		}
	}
}

// withCandidates adds candidate lines (a=candidate values) to every media
// section of an answer that has candidates, after pion's own and before
// a=end-of-candidates. pion/webrtc v3 gathers srflx candidates only on
// sockets of its own, never through the shared UDP mux, so the public
// address learned on the mux's socket joins the answer here.
func withCandidates(answer string, cands []string) (string, error) {
	if len(cands) == 0 {
		return answer, nil
	}
	var sd sdp.SessionDescription
	if err := sd.Unmarshal([]byte(answer)); err != nil {
		return "", fmt.Errorf("parse answer: %w", err)
	}
	for _, md := range sd.MediaDescriptions {
		last := -1
		for i, a := range md.Attributes {
			if a.Key == "candidate" {
				last = i
			}
		}
		if last < 0 {
			continue
		}
		add := make([]sdp.Attribute, 0, len(cands))
		for _, c := range cands {
			add = append(add, sdp.Attribute{Key: "candidate", Value: c})
		}
		md.Attributes = slices.Insert(md.Attributes, last+1, add...)
	}
	b, err := sd.Marshal()
	return string(b), err
}
