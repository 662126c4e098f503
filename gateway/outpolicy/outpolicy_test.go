package outpolicy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	local := func() []netip.Addr { return []netip.Addr{netip.MustParseAddr("192.0.2.10")} }
	def, _ := New(Config{OwnPorts: []int{8080}, LocalAddrs: local})
	deny, _ := New(Config{DenyPrivate: true, OwnPorts: []int{8080}, LocalAddrs: local})
	allow, err := New(Config{DenyPrivate: true, OwnPorts: []int{8080}, LocalAddrs: local,
		Allow: []string{"10.1.0.0/16", "127.0.0.1", "nginx.internal", "169.254.0.0/16"}})
	if err != nil {
		t.Fatal(err)
	}
	type want struct{ def, deny, allow Class } // 0 = allowed
	cases := []struct {
		host, addr string
		want
	}{
		{"", "169.254.169.254:80", want{Metadata, Metadata, Metadata}},
		{"", "[::ffff:169.254.169.254]:80", want{Metadata, Metadata, Metadata}},
		{"", "[fd00:ec2::254]:80", want{Metadata, Metadata, Metadata}},
		{"", "100.100.100.200:80", want{Metadata, Metadata, Metadata}},
		{"", "169.254.1.2:1935", want{LinkLocal, LinkLocal, LinkLocal}}, // an allow entry never opens it
		{"", "[fe80::1%eth0]:1935", want{LinkLocal, LinkLocal, LinkLocal}},
		{"", "224.0.0.1:1935", want{Multicast, Multicast, Multicast}},
		{"", "[ff02::1]:1935", want{Multicast, Multicast, Multicast}},
		{"", "255.255.255.255:1935", want{Multicast, Multicast, Multicast}},
		{"", "0.0.0.0:1935", want{Unspecified, Unspecified, Unspecified}},
		{"", "[::]:1935", want{Unspecified, Unspecified, Unspecified}},
		{"", "127.0.0.1:8080", want{OwnPort, OwnPort, OwnPort}},
		{"", "[::1]:8080", want{OwnPort, OwnPort, OwnPort}},
		{"", "192.0.2.10:8080", want{OwnPort, OwnPort, OwnPort}},
		{"", "192.0.2.11:8080", want{0, 0, 0}}, // another host's 8080
		{"", "127.0.0.1:1935", want{0, Loopback, 0}},
		{"", "127.0.0.2:1935", want{0, Loopback, Loopback}},
		{"", "[::1]:1935", want{0, Loopback, Loopback}},
		{"", "10.0.0.5:1935", want{0, Private, Private}},
		{"", "10.1.2.3:1935", want{0, Private, 0}},
		{"", "172.16.0.1:1935", want{0, Private, Private}},
		{"", "192.168.1.1:1935", want{0, Private, Private}},
		{"", "100.64.0.1:1935", want{0, Private, Private}},
		{"", "[fc00::1]:1935", want{0, Private, Private}},
		{"nginx.internal", "192.168.1.1:1935", want{0, Private, 0}},
		{"NGINX.internal.", "192.168.1.1:1935", want{0, Private, 0}},
		{"nginx.internal", "169.254.169.254:1935", want{Metadata, Metadata, Metadata}},
		{"", "203.0.113.7:1935", want{0, 0, 0}},
		{"", "[2001:db8::1]:443", want{0, 0, 0}},
	}
	for _, c := range cases {
		ap, err := netip.ParseAddrPort(c.addr)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range []*Policy{def, deny, allow} {
			wantClass := []Class{c.def, c.deny, c.allow}[i]
			err := p.Check(c.host, ap)
			var d *DeniedError
			got := Class(0)
			if errors.As(err, &d) {
				got = d.Class
			} else if err != nil {
				t.Fatalf("%s: %v", c.addr, err)
			}
			if got != wantClass {
				t.Errorf("policy %d, %q %s: class %d, want %d (%v)", i, c.host, c.addr, got, wantClass, err)
			}
		}
	}
	// A nil policy is the default one, without own ports.
	if err := (*Policy)(nil).Check("", netip.MustParseAddrPort("169.254.169.254:80")); err == nil {
		t.Error("nil policy allowed the metadata address")
	}
	if err := (*Policy)(nil).Check("", netip.MustParseAddrPort("10.0.0.1:80")); err != nil {
		t.Errorf("nil policy refused a private address: %v", err)
	}
}

func TestMessages(t *testing.T) {
	p, _ := New(Config{DenyPrivate: true})
	for addr, want := range map[string]string{
		"169.254.1.1":     "host resolves to a link-local address, which castbridge never dials",
		"169.254.169.254": "host resolves to a cloud metadata address, which castbridge never dials",
		"10.0.0.1":        "host resolves to a private address, which this gateway refuses (--deny-private-outputs); --allow-outputs can open it",
	} {
		err := p.CheckLiteral(addr, 1935)
		if err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", addr, err, want)
		}
		if strings.Contains(err.Error(), addr) {
			t.Errorf("message names the address: %v", err)
		}
	}
	if err := p.CheckLiteral("LocalHost", 1935); err == nil {
		t.Error("localhost passed with DenyPrivate")
	}
	if err := p.CheckLiteral("ingest.example.com", 1935); err != nil {
		t.Errorf("a name is left to Resolve: %v", err)
	}
}

func TestNewRejectsBadEntries(t *testing.T) {
	for _, a := range []string{"http://x", "a b", "host:1935", "10.0.0.0/40"} {
		if _, err := New(Config{Allow: []string{a}}); err == nil {
			t.Errorf("%q accepted", a)
		}
	}
}

type fakeResolver struct {
	addrs []netip.Addr
	calls atomic.Int32
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, _ string) ([]netip.Addr, error) {
	r.calls.Add(1)
	return r.addrs, nil
}

// countingListener accepts on loopback and counts connections.
func countingListener(t *testing.T) (net.Listener, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return ln, &n
}

func TestDialRefusesBeforeAnyPacket(t *testing.T) {
	ln, conns := countingListener(t)
	port := ln.Addr().(*net.TCPAddr).Port
	// The name resolves to the metadata address first and to the listener
	// second; only the listener may be dialed, and only when allowed.
	r := &fakeResolver{addrs: []netip.Addr{netip.MustParseAddr("169.254.169.254")}}
	p, _ := New(Config{DenyPrivate: true, Resolver: r})
	var dialed atomic.Int32
	d := &net.Dialer{Timeout: time.Second, Control: func(_, _ string, _ rawConn) error { dialed.Add(1); return nil }}
	_, err := p.Dial(t.Context(), d, "tcp", net.JoinHostPort("ingest.example.com", itoa(port)))
	var de *DeniedError
	if !errors.As(err, &de) || de.Class != Metadata {
		t.Fatalf("dial of a name resolving to metadata: %v", err)
	}
	if dialed.Load() != 0 || r.calls.Load() != 1 {
		t.Fatalf("sockets %d, lookups %d; want 0 and 1", dialed.Load(), r.calls.Load())
	}

	// Loopback behind a name: refused with DenyPrivate, dialed (the checked
	// address, one lookup) when the name is allowed.
	r.addrs = []netip.Addr{netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("127.0.0.1")}
	if _, err := p.Dial(t.Context(), d, "tcp", net.JoinHostPort("ingest.example.com", itoa(port))); !errors.As(err, &de) || de.Class != Metadata {
		t.Fatalf("denied-only addresses: %v", err)
	}
	if dialed.Load() != 0 {
		t.Fatal("a refused address was dialed")
	}
	pa, _ := New(Config{DenyPrivate: true, Resolver: r, Allow: []string{"ingest.example.com"}})
	r.calls.Store(0)
	c, err := pa.Dial(t.Context(), d, "tcp", net.JoinHostPort("ingest.example.com", itoa(port)))
	if err != nil {
		t.Fatalf("allowed name: %v", err)
	}
	if got := c.RemoteAddr().String(); got != ln.Addr().String() {
		t.Errorf("dialed %s, want %s", got, ln.Addr())
	}
	c.Close()
	if dialed.Load() != 1 || r.calls.Load() != 1 {
		t.Errorf("sockets %d, lookups %d; want 1 and 1 (the metadata address skipped)", dialed.Load(), r.calls.Load())
	}
	waitFor(t, func() bool { return conns.Load() == 1 })
}

func TestHTTPClientRedirects(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/meta":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		default:
			w.Header().Set("Content-Type", "audio/mpeg")
		}
	}))
	defer srv.Close()
	p, _ := New(Config{})
	cl := p.HTTPClient()
	_, err := cl.Get(srv.URL + "/meta")
	var de *DeniedError
	if !errors.As(err, &de) || de.Class != Metadata {
		t.Fatalf("redirect to metadata: %v", err)
	}
	if _, err := cl.Get(srv.URL + "/loop"); !errors.Is(err, ErrRedirects) {
		t.Fatalf("redirect loop: %v", err)
	}
	resp, err := cl.Get(srv.URL + "/ok")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The API's own port is never dialed, redirect or not.
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	p.AddOwnPort(port)
	before := hits.Load()
	if _, err := p.HTTPClient().Get(srv.URL + "/ok"); !errors.As(err, &de) || de.Class != OwnPort {
		t.Fatalf("own port: %v", err)
	}
	if hits.Load() != before {
		t.Error("the own port was reached")
	}
}
