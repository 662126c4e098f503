package webrtcin

import (
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func loopbackPair(t *testing.T) (tx, rx *net.UDPConn) {
	t.Helper()
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tx, err = net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Close(); _ = rx.Close() })
	_ = rx.SetReadDeadline(time.Now().Add(10 * time.Second))
	return tx, rx
}

// addrConnKinds are the two ways cachedAddrConn reads: a datagram a
// system call, and recvmmsg's batches (Linux).
func addrConnKinds(t *testing.T, rx *net.UDPConn) map[string]*cachedAddrConn {
	kinds := map[string]*cachedAddrConn{"single": {UDPConn: rx}}
	if c := newCachedAddrConn(rx, 0); c.batch != nil {
		kinds["batched"] = c
	} else if runtime.GOOS == "linux" {
		t.Fatal("no recvmmsg reader on Linux")
	}
	return kinds
}

// TestCachedAddrConn: every datagram comes with its sender's address, the
// same value for the same sender, a different one for another.
func TestCachedAddrConn(t *testing.T) {
	_, probe := loopbackPair(t)
	for kind := range addrConnKinds(t, probe) {
		t.Run(kind, func(t *testing.T) {
			tx, rx := loopbackPair(t)
			testCachedAddrConn(t, tx, rx, addrConnKinds(t, rx)[kind])
		})
	}
}

func testCachedAddrConn(t *testing.T, tx, rx *net.UDPConn, c *cachedAddrConn) {
	tx2, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx2.Close()
	buf := make([]byte, 64)
	var got []*net.UDPAddr
	for i, s := range []*net.UDPConn{tx, tx, tx2} {
		if _, err := s.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		n, addr, err := c.ReadFrom(buf)
		if err != nil || n != 1 || buf[0] != byte(i) {
			t.Fatalf("datagram %d: %d bytes %v, %v", i, n, buf[:n], err)
		}
		ua := addr.(*net.UDPAddr)
		if want := s.LocalAddr().(*net.UDPAddr); ua.Port != want.Port || !ua.IP.Equal(want.IP) || len(ua.IP) != net.IPv4len {
			t.Errorf("datagram %d from %v, want %v (a 4-byte IPv4 address)", i, ua, want)
		}
		got = append(got, ua)
	}
	if got[0] != got[1] {
		t.Error("two datagrams of one sender came with different address values")
	}
	if got[0] == got[2] || got[0].Port == got[2].Port {
		t.Error("two senders share an address")
	}
}

// TestAddrCacheBounded: past maxCachedAddrs senders the cache starts over.
func TestAddrCacheBounded(t *testing.T) {
	var c addrCache
	base := netip.MustParseAddr("10.0.0.1")
	first := c.get(netip.AddrPortFrom(base, 1))
	for p := 2; p <= maxCachedAddrs+10; p++ {
		a := c.get(netip.AddrPortFrom(base, uint16(p)))
		if a.Port != p {
			t.Fatalf("port %d came back as %v", p, a)
		}
		if len(c.m) > maxCachedAddrs {
			t.Fatalf("%d addresses cached, more than %d", len(c.m), maxCachedAddrs)
		}
	}
	if again := c.get(netip.AddrPortFrom(base, 1)); again == first || again.Port != 1 {
		t.Errorf("the first sender after the cache started over: %v (same value %v)", again, again == first)
	}
}

// TestCachedReadAllocs: reading a known sender's datagram allocates
// nothing (net.UDPConn.ReadFrom allocates its *net.UDPAddr every time).
func TestCachedReadAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("allocation counts are meaningless with -race")
	}
	tx, rx := loopbackPair(t)
	for kind, c := range addrConnKinds(t, rx) {
		buf := make([]byte, 1500)
		pkt := make([]byte, 1200)
		read := func() {
			if _, err := tx.Write(pkt); err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.ReadFrom(buf); err != nil {
				t.Fatal(err)
			}
		}
		read()
		if allocs := testing.AllocsPerRun(200, read); allocs != 0 {
			t.Errorf("%s: a datagram read allocates %v times, want 0", kind, allocs)
		}
	}
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
