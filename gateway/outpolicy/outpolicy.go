// Package outpolicy decides which addresses castbridge may dial for the
// outputs a client names (RTMP(S) ingests, Icecast sources), so that an API
// client cannot use the gateway to reach what only the gateway can reach.
//
// Always refused, whatever the flags: link-local addresses (169.254.0.0/16,
// fe80::/10), cloud metadata addresses, multicast and broadcast,
// unspecified addresses (0.0.0.0/8, ::), and castbridge's own listening
// ports on any of the host's addresses. Loopback and private ranges
// (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) are refused when
// DenyPrivate is set and allowed otherwise, so that pushing to a local
// nginx works out of the box. Allow (host names or CIDRs) opens loopback
// and private addresses for exactly those entries even with DenyPrivate.
//
// A host name is resolved once, every address is checked, and only the
// checked addresses are dialed (Dial): there is no second lookup a DNS
// rebinding could answer differently.
package outpolicy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Class is why an address is refused.
type Class int

// Refusal classes.
const (
	LinkLocal Class = iota + 1
	Metadata
	Multicast
	Unspecified
	OwnPort
	Loopback  // only with DenyPrivate (or a restricted policy)
	Private   // only with DenyPrivate (or a restricted policy)
	NotListed // a restricted policy's host is not among its output hosts
)

// DeniedError is a refused output address. Its text names the class of
// address, never the address or the URL.
type DeniedError struct {
	Class Class
	Port  int // OwnPort only
	// Scoped: the refusal is a restricted policy's (a scoped token's),
	// whose message names the token rather than the gateway's flags.
	Scoped bool
}

// OutsideScope: the host is not among a restricted policy's hosts (the
// caller's credential does not cover it), rather than an address the
// policy refuses to everyone of its kind.
func (e *DeniedError) OutsideScope() bool { return e.Class == NotListed }

func (e *DeniedError) Error() string {
	switch e.Class {
	case LinkLocal:
		return "host resolves to a link-local address, which castbridge never dials"
	case Metadata:
		return "host resolves to a cloud metadata address, which castbridge never dials"
	case Multicast:
		return "host resolves to a multicast or broadcast address, which castbridge never dials"
	case Unspecified:
		return "host resolves to an unspecified address, which castbridge never dials"
	case OwnPort:
		return fmt.Sprintf("host and port %d are this gateway's own listener, which castbridge never dials", e.Port)
	case Loopback, Private:
		if e.Scoped {
			kind := "loopback"
			if e.Class == Private {
				kind = "private"
			}
			return "host resolves to a " + kind + " address, which a scoped token may not push to"
		}
	}
	switch e.Class {
	case NotListed:
		return "host is not among the output hosts this token allows (its outputs claim)"
	case Loopback:
		return "host resolves to a loopback address, which this gateway refuses (--deny-private-outputs); --allow-outputs can open it"
	case Private:
		return "host resolves to a private address, which this gateway refuses (--deny-private-outputs); --allow-outputs can open it"
	}
	return "host is refused"
}

// Resolver looks host names up; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config is a policy's settings.
type Config struct {
	// DenyPrivate refuses loopback and private addresses.
	DenyPrivate bool
	// Allow lists host names and CIDRs (a bare IP is a /32 or /128) whose
	// loopback and private addresses stay allowed with DenyPrivate.
	Allow []string
	// OwnPorts are castbridge's own TCP listening ports.
	OwnPorts []int
	// Resolver defaults to net.DefaultResolver.
	Resolver Resolver
	// LocalAddrs lists the host's own addresses (for OwnPorts); nil means
	// the interfaces' addresses.
	LocalAddrs func() []netip.Addr
}

// Policy is a parsed Config. A nil *Policy is the default policy (private
// ranges allowed, nothing opened, no own ports known). Its methods are safe
// for concurrent use.
type Policy struct {
	denyPrivate bool
	prefixes    []netip.Prefix
	hosts       []string
	resolver    Resolver
	localAddrs  func() []netip.Addr
	// only, when non-nil, is a restricted policy's list of output hosts:
	// no other host is dialed (see Restrict).
	only []hostPort

	// own is shared with the policies Restrict derives, so that a port
	// added later is refused by them too.
	own *ownPorts
}

type ownPorts struct {
	mu    sync.RWMutex
	ports []int
}

// hostPort is one entry of a restricted policy's host list; port 0 is any.
type hostPort struct {
	host string
	port int
}

// New parses cfg; an Allow entry that is neither a CIDR, an IP nor a host
// name is an error.
func New(cfg Config) (*Policy, error) {
	p := &Policy{denyPrivate: cfg.DenyPrivate, resolver: cfg.Resolver, localAddrs: cfg.LocalAddrs, own: &ownPorts{}}
	for _, a := range cfg.Allow {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if pr, err := netip.ParsePrefix(a); err == nil {
			p.prefixes = append(p.prefixes, pr.Masked())
			continue
		}
		if ip, err := netip.ParseAddr(strings.Trim(a, "[]")); err == nil {
			ip = ip.Unmap()
			p.prefixes = append(p.prefixes, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		if strings.ContainsAny(a, "/:@?# \t") {
			return nil, fmt.Errorf("allowed output %q is neither a host name nor a CIDR", a)
		}
		p.hosts = append(p.hosts, strings.ToLower(strings.TrimSuffix(a, ".")))
	}
	for _, port := range cfg.OwnPorts {
		p.AddOwnPort(port)
	}
	return p, nil
}

// AddOwnPort records one more of castbridge's listening ports (one known
// only once its listener is up).
func (p *Policy) AddOwnPort(port int) {
	if p == nil || port <= 0 {
		return
	}
	p.own.mu.Lock()
	defer p.own.mu.Unlock()
	if !slices.Contains(p.own.ports, port) {
		p.own.ports = append(p.own.ports, port)
	}
}

func (p *Policy) isOwnPort(port int) bool {
	if p == nil {
		return false
	}
	p.own.mu.RLock()
	defer p.own.mu.RUnlock()
	return slices.Contains(p.own.ports, port)
}

// Restrict derives the policy of a scoped credential (a publish token):
// everything p refuses, and also loopback and private addresses (as with
// DenyPrivate; p's Allow entries, the operator's explicit openings, still
// open theirs), and every host that is not in hosts. An entry of hosts is
// a host name or IP address, optionally with a port ("host:port",
// "[v6]:port"); without one, any port of the host. The host is compared
// as written in the output URL, case-insensitively, so a name's
// addresses are still resolved and checked. An empty hosts list allows
// no output at all. A nil p restricts the default policy.
func (p *Policy) Restrict(hosts []string) (*Policy, error) {
	r := &Policy{denyPrivate: true, only: []hostPort{}, own: &ownPorts{}}
	if p != nil {
		r.prefixes, r.hosts, r.resolver, r.localAddrs, r.own = p.prefixes, p.hosts, p.resolver, p.localAddrs, p.own
	}
	for _, h := range hosts {
		hp, err := parseHostPort(h)
		if err != nil {
			return nil, err
		}
		r.only = append(r.only, hp)
	}
	return r, nil
}

// Restricted reports whether the policy is one Restrict made.
func (p *Policy) Restricted() bool { return p != nil && p.only != nil }

func parseHostPort(s string) (hostPort, error) {
	s = strings.TrimSpace(s)
	bad := fmt.Errorf("output host %q is neither a host nor host:port", s)
	if s == "" || strings.ContainsAny(s, "/@?# \t") {
		return hostPort{}, bad
	}
	host, port := s, 0
	if h, ps, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > 65535 {
			return hostPort{}, bad
		}
		host, port = h, n
	} else if strings.Count(s, ":") == 1 {
		return hostPort{}, bad // "host:" or "host:x"
	}
	host = normHost(host)
	if host == "" {
		return hostPort{}, bad
	}
	return hostPort{host: host, port: port}, nil
}

// normHost is a host as compared: lower case, no brackets, zone or
// trailing dot, an IP address in its canonical form.
func normHost(h string) string {
	h = strings.Trim(h, "[]")
	if i := strings.IndexByte(h, '%'); i >= 0 {
		h = h[:i]
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.Unmap().String()
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// listed: a restricted policy names host (and port) among its outputs;
// an unrestricted one lists everything.
func (p *Policy) listed(host string, port int) bool {
	if p == nil || p.only == nil {
		return true
	}
	h := normHost(host)
	for _, e := range p.only {
		if e.host == h && (e.port == 0 || e.port == port) {
			return true
		}
	}
	return false
}

// Cloud metadata services outside the link-local range (which is refused
// as a whole): AWS's IPv6 endpoints, Alibaba's, Azure's wire server.
var metadata = []netip.Addr{
	netip.MustParseAddr("fd00:ec2::254"),
	netip.MustParseAddr("fd00:ec2::23"),
	netip.MustParseAddr("100.100.100.200"),
	netip.MustParseAddr("168.63.129.16"),
}

var (
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	cgnat       = netip.MustParsePrefix("100.64.0.0/10")
	broadcast   = netip.MustParseAddr("255.255.255.255")
)

// Check decides on one address to dial. host is the name the address came
// from (as written in the URL, "" for none): an allowed host name opens
// its loopback and private addresses.
func (p *Policy) Check(host string, ap netip.AddrPort) error {
	ip := ap.Addr().Unmap().WithZone("")
	switch {
	case slices.Contains(metadata, ip) || ip == netip.MustParseAddr("169.254.169.254"):
		return &DeniedError{Class: Metadata}
	case ip.IsLinkLocalUnicast():
		return &DeniedError{Class: LinkLocal}
	case ip.IsMulticast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip == broadcast:
		return &DeniedError{Class: Multicast}
	case ip.IsUnspecified() || thisNetwork.Contains(ip):
		return &DeniedError{Class: Unspecified}
	}
	if port := int(ap.Port()); p.isOwnPort(port) && p.isLocal(ip) {
		return &DeniedError{Class: OwnPort, Port: port}
	}
	if !p.listed(host, int(ap.Port())) {
		return &DeniedError{Class: NotListed, Scoped: true}
	}
	if p == nil || !p.denyPrivate || p.allowed(host, ip) {
		return nil
	}
	switch {
	case ip.IsLoopback():
		return &DeniedError{Class: Loopback, Scoped: p.Restricted()}
	case ip.IsPrivate() || cgnat.Contains(ip):
		return &DeniedError{Class: Private, Scoped: p.Restricted()}
	}
	return nil
}

func (p *Policy) allowed(host string, ip netip.Addr) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h != "" && slices.Contains(p.hosts, h) {
		return true
	}
	for _, pr := range p.prefixes {
		if pr.Contains(ip) {
			return true
		}
	}
	return false
}

// isLocal: ip is one of the host's own (loopback, or an interface's).
func (p *Policy) isLocal(ip netip.Addr) bool {
	if ip.IsLoopback() {
		return true
	}
	var addrs []netip.Addr
	if p.localAddrs != nil {
		addrs = p.localAddrs()
	} else {
		addrs = interfaceAddrs()
	}
	for _, a := range addrs {
		if a.Unmap().WithZone("") == ip {
			return true
		}
	}
	return false
}

func interfaceAddrs() []netip.Addr {
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	out := make([]netip.Addr, 0, len(ifas))
	for _, a := range ifas {
		if pn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(pn.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// CheckLiteral decides, without a lookup, on a host written as an IP
// address (or "localhost"); any other name is left to Resolve. For a
// request's validation: the clear refusals come before anything is dialed.
// A restricted policy's host list is checked here for names too.
func (p *Policy) CheckLiteral(host string, port int) error {
	if !p.listed(host, port) {
		return &DeniedError{Class: NotListed, Scoped: true}
	}
	h := strings.Trim(host, "[]")
	if i := strings.IndexByte(h, '%'); i >= 0 {
		h = h[:i]
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(h); err == nil {
		ips = []netip.Addr{ip}
	} else if l := strings.ToLower(strings.TrimSuffix(h, ".")); l == "localhost" || strings.HasSuffix(l, ".localhost") {
		ips = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}
	}
	for _, ip := range ips {
		if err := p.Check(host, netip.AddrPortFrom(ip, uint16(port))); err != nil {
			return err
		}
	}
	return nil
}

// ErrLookup: the host name did not resolve (the cause is wrapped).
var ErrLookup = errors.New("host name does not resolve")

// Resolve looks host up once and returns its addresses the policy allows,
// with port. When it allows none, the error is the first refusal.
func (p *Policy) Resolve(ctx context.Context, host string, port int) ([]netip.AddrPort, error) {
	if !p.listed(host, port) {
		return nil, &DeniedError{Class: NotListed, Scoped: true} // not even looked up
	}
	h := strings.Trim(host, "[]")
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(h); err == nil {
		ips = []netip.Addr{ip}
	} else {
		var r Resolver = net.DefaultResolver
		if p != nil && p.resolver != nil {
			r = p.resolver
		}
		if ips, err = r.LookupNetIP(ctx, "ip", h); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrLookup, err)
		}
		if len(ips) == 0 {
			return nil, ErrLookup
		}
	}
	var out []netip.AddrPort
	var first error
	for _, ip := range ips {
		ap := netip.AddrPortFrom(ip.Unmap(), uint16(port))
		if err := p.Check(host, ap); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		out = append(out, ap)
	}
	if len(out) == 0 {
		return nil, first
	}
	return out, nil
}

// Dial resolves addr's host once, checks every address and dials the
// allowed ones in turn with d (nil for a plain net.Dialer). Only "tcp",
// "tcp4" and "tcp6" are dialed. Its signature fits rtmppush.Config's
// DialContext; DialContext fits http.Transport's.
func (p *Policy) Dial(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("outpolicy: network %q is not dialed", network)
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("outpolicy: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("outpolicy: bad port")
	}
	aps, err := p.Resolve(ctx, host, port)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, ap := range aps {
		if network == "tcp4" && !ap.Addr().Is4() || network == "tcp6" && ap.Addr().Is4() {
			continue
		}
		c, err := d.DialContext(ctx, "tcp", ap.String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("outpolicy: no %s address", network)
	}
	return nil, errors.Join(errs...)
}

// DialContext is Dial with a plain dialer, for http.Transport.
func (p *Policy) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return p.Dial(ctx, nil, network, addr)
}
