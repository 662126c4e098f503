package outpolicy

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

type mapResolver map[string][]netip.Addr

func (f mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[strings.ToLower(strings.TrimSuffix(host, "."))]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

// TestRestrict: a scoped token's policy dials only its listed hosts (and
// ports), refuses loopback and private addresses whatever the parent
// allows, keeps the operator's Allow openings and the parent's own ports.
func TestRestrict(t *testing.T) {
	res := mapResolver{
		"a.rtmp.example": {netip.MustParseAddr("203.0.113.7")},
		"rebind.example": {netip.MustParseAddr("127.0.0.1")},
		"nginx.internal": {netip.MustParseAddr("10.9.0.1")},
	}
	local := func() []netip.Addr { return []netip.Addr{netip.MustParseAddr("192.0.2.10")} }
	parent, err := New(Config{Allow: []string{"nginx.internal"}, Resolver: res, LocalAddrs: local})
	if err != nil {
		t.Fatal(err)
	}
	r, err := parent.Restrict([]string{"a.rtmp.example", "rebind.example", "203.0.113.9:1935", "[2001:db8::1]:443", "127.0.0.1", "nginx.internal", "192.0.2.10"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Restricted() || parent.Restricted() {
		t.Fatal("Restricted")
	}
	parent.AddOwnPort(8080) // added after Restrict: shared
	for _, c := range []struct {
		host string
		port int
		want Class // 0 = allowed
	}{
		{"a.rtmp.example", 1935, 0},
		{"A.RTMP.EXAMPLE.", 443, 0},
		{"rebind.example", 1935, Loopback}, // a listed name resolving to loopback
		{"b.rtmp.example", 1935, NotListed},
		{"a.rtmp.example.evil", 1935, NotListed},
		{"203.0.113.9", 1935, 0},
		{"203.0.113.9", 1936, NotListed},
		{"[2001:db8::1]", 443, 0},
		{"2001:db8:0::1", 443, 0},
		{"127.0.0.1", 1935, Loopback},
		{"nginx.internal", 1935, 0}, // the operator's --allow-outputs entry
		{"192.0.2.10", 8080, OwnPort},
		{"10.0.0.1", 1935, NotListed},
	} {
		_, err := r.Resolve(context.Background(), c.host, c.port)
		var d *DeniedError
		switch {
		case c.want == 0 && err != nil:
			t.Errorf("%s:%d: %v, want allowed", c.host, c.port, err)
		case c.want != 0 && (!errors.As(err, &d) || d.Class != c.want):
			t.Errorf("%s:%d: %v, want class %d", c.host, c.port, err, c.want)
		}
		// The validation path (no lookup) refuses unlisted names too.
		if lit := r.CheckLiteral(c.host, c.port); c.want == NotListed && (!errors.As(lit, &d) || d.Class != NotListed) {
			t.Errorf("CheckLiteral %s:%d: %v, want NotListed", c.host, c.port, lit)
		}
	}
	if err := r.CheckLiteral("127.0.0.1", 1935); err == nil || !strings.Contains(err.Error(), "scoped token") {
		t.Errorf("scoped loopback refusal: %v", err)
	}
	// The parent itself is unchanged: loopback allowed, any host.
	if err := parent.CheckLiteral("127.0.0.1", 1935); err != nil {
		t.Errorf("parent: %v", err)
	}
	// An empty list dials nothing; a malformed entry is an error.
	none, _ := parent.Restrict(nil)
	if err := none.CheckLiteral("a.rtmp.example", 1935); err == nil {
		t.Error("an empty outputs list allows a host")
	}
	for _, bad := range []string{"", "rtmp://a.example", "a.example:", "a.example:0", "a.example:x", "a b", "a/b"} {
		if _, err := parent.Restrict([]string{bad}); err == nil {
			t.Errorf("Restrict accepts %q", bad)
		}
	}
	if c := r.HTTPClient(); c.Transport == nil {
		t.Error("no transport")
	}
}

// FuzzRestrict: whatever a token's outputs claim holds, Restrict either
// refuses it or makes a policy that allows only what it lists, and never
// loopback.
func FuzzRestrict(f *testing.F) {
	for _, s := range []string{"a.rtmp.example", "a.example:1935", "[2001:db8::1]:443", "127.0.0.1", "", "a:b:c", "[::1]", "x:0"} {
		f.Add(s, "a.rtmp.example", 1935)
	}
	f.Fuzz(func(t *testing.T, entry, host string, port int) {
		r, err := (*Policy)(nil).Restrict([]string{entry})
		if err != nil {
			return
		}
		if port < 1 || port > 65535 {
			return
		}
		if err := r.CheckLiteral(host, port); err == nil && !r.listed(host, port) {
			t.Fatalf("%q allows unlisted %s:%d", entry, host, port)
		}
		if err := r.CheckLiteral("127.0.0.1", port); err == nil {
			t.Fatalf("%q allows loopback", entry)
		}
	})
}
