package webrtcin

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func datagram(sender, i int) []byte {
	b := make([]byte, 1+(i*97+sender*31)%1500)
	for j := range b {
		b[j] = byte(sender*50 + i + j)
	}
	return b
}

// TestBatchReader: datagrams waiting on the socket come out of few
// recvmmsg calls, each whole, in order per sender, with its sender's
// address.
func TestBatchReader(t *testing.T) {
	_, rx := loopbackPair(t)
	b, err := newBatchReader(rx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var senders []*net.UDPConn
	for range 3 {
		s, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		senders = append(senders, s)
	}
	const each = 20
	for i := range each {
		for si, s := range senders {
			if _, err := s.Write(datagram(si, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	next := make([]int, len(senders))
	buf := make([]byte, 2048)
	for range each * len(senders) {
		n, from, err := b.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		si := -1
		for j, s := range senders {
			if s.LocalAddr().(*net.UDPAddr).AddrPort() == from {
				si = j
			}
		}
		if si < 0 {
			t.Fatalf("a datagram from %v, no sender of ours", from)
		}
		if want := datagram(si, next[si]); !bytes.Equal(buf[:n], want) {
			t.Fatalf("sender %d datagram %d: %d bytes, want its %d", si, next[si], n, len(want))
		}
		next[si]++
	}
	// 60 datagrams, 32 a call: two calls, three if the first came before
	// the last datagrams were sent.
	if b.reads > 3 {
		t.Errorf("%d datagrams took %d recvmmsg calls", each*len(senders), b.reads)
	}
}

// TestBatchReaderEdges: an oversized datagram is dropped and counted, a
// short buffer gets the datagram's start (as read(2)), IPv6 sources come
// back as such, and closing the socket ends a blocked read.
func TestBatchReaderEdges(t *testing.T) {
	tx, rx := loopbackPair(t)
	b, err := newBatchReader(rx, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]byte{make([]byte, udpBatchBuf+1), []byte("after"), bytes.Repeat([]byte{7}, 1000)} {
		if _, err := tx.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 100)
	if n, _, err := b.ReadFrom(buf); err != nil || string(buf[:n]) != "after" {
		t.Fatalf("after an oversized datagram: %q, %v; want \"after\"", buf[:n], err)
	}
	if n := b.truncated.Load(); n != 1 {
		t.Errorf("truncated %d, want the one oversized datagram", n)
	}
	if n, _, err := b.ReadFrom(buf); err != nil || n != 100 || buf[99] != 7 {
		t.Fatalf("a 1000-byte datagram into 100 bytes: %d, %v", n, err)
	}

	if rx6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err == nil {
		defer rx6.Close()
		tx6, err := net.DialUDP("udp6", nil, rx6.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer tx6.Close()
		b6, err := newBatchReader(rx6, 0)
		if err != nil {
			t.Fatal(err)
		}
		_ = rx6.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := tx6.Write([]byte("six")); err != nil {
			t.Fatal(err)
		}
		n, from, err := b6.ReadFrom(buf)
		if err != nil || string(buf[:n]) != "six" || from != tx6.LocalAddr().(*net.UDPAddr).AddrPort() || !from.Addr().Is6() {
			t.Errorf("IPv6: %q from %v, %v; want \"six\" from %v", buf[:n], from, err, tx6.LocalAddr())
		}
	}

	done := make(chan error, 1)
	go func() {
		_, _, err := b.ReadFrom(buf)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	_ = rx.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("read after close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("closing the socket did not end a blocked read")
	}
}

func TestSockaddrAddrPortShort(t *testing.T) {
	var sa unix.RawSockaddrInet6
	sa.Family = unix.AF_INET
	if _, ok := sockaddrAddrPort(&sa, 8); ok {
		t.Error("an 8-byte AF_INET address was read")
	}
	if ap, ok := sockaddrAddrPort(&sa, unix.SizeofSockaddrInet4); !ok || ap != netip.AddrPortFrom(netip.AddrFrom4([4]byte{}), 0) {
		t.Errorf("a zero AF_INET address: %v %v", ap, ok)
	}
	sa.Family = unix.AF_INET6
	if _, ok := sockaddrAddrPort(&sa, unix.SizeofSockaddrInet4); ok {
		t.Error("a 16-byte AF_INET6 address was read")
	}
	sa.Family = 99
	if _, ok := sockaddrAddrPort(&sa, unix.SizeofSockaddrInet6); ok {
		t.Error("an unknown family was read")
	}
}

// TestTransportCountsOversizedDatagrams: a datagram over 4 KiB sent to the
// ICE port is dropped and counted where the metrics read it; a normal one
// is not counted.
func TestTransportCountsOversizedDatagrams(t *testing.T) {
	tr, err := Listen(ListenConfig{IPs: []net.IP{net.IPv4(127, 0, 0, 1).To4()}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tr.Port()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, size := range []int{100, udpBatchBuf + 1, 200, 9000} {
		if _, err := c.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for tr.OversizedDatagrams() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // nothing more comes
	if n := tr.OversizedDatagrams(); n != 2 {
		t.Errorf("%d oversized datagrams counted, want 2", n)
	}
}

// TestBatchReaderCoalesce: while datagrams come fast (busy), the reader
// waits ReadCoalesce after a batch that was not full, so what arrives
// meanwhile comes in one recvmmsg; otherwise it reads again at once.
func TestBatchReaderCoalesce(t *testing.T) {
	const coalesce = time.Second
	tx, rx := loopbackPair(t)
	b, err := newBatchReader(rx, coalesce)
	if err != nil {
		t.Fatal(err)
	}
	send := func(n int) {
		for i := range n {
			if _, err := tx.Write(datagram(0, i)); err != nil {
				t.Error(err)
			}
		}
	}
	next := func() {
		t.Helper()
		if _, _, _, err := b.Next(); err != nil {
			t.Fatal(err)
		}
	}
	// Not busy: after a batch of two the next datagram is read as it
	// comes.
	send(2)
	time.Sleep(50 * time.Millisecond) // both are in the socket
	next()
	next()
	go func() {
		time.Sleep(50 * time.Millisecond)
		send(1)
	}()
	start := time.Now()
	next()
	if d := time.Since(start); d >= coalesce {
		t.Errorf("not busy, the next read took %v", d)
	}
	// Busy: a batch of two, then three while the reader waits: one call
	// for the three, a second after the first call's end.
	b.busy = true
	send(2)
	time.Sleep(50 * time.Millisecond)
	next()
	next()
	if b.n != 2 {
		t.Fatalf("a batch of %d, want the two sent", b.n)
	}
	reads := b.reads
	go func() {
		time.Sleep(100 * time.Millisecond)
		send(3)
	}()
	start = time.Now()
	next()
	if d := time.Since(start); d < coalesce {
		t.Errorf("busy, the next read came %v after a batch of two, want the %v wait", d, coalesce)
	}
	next()
	next()
	if b.reads != reads+1 || b.n != 3 {
		t.Errorf("the three datagrams sent during the wait took %d calls (the last a batch of %d)", b.reads-reads, b.n)
	}
}

// TestBatchReaderBusy: the reader counts as busy while a coalesce gathers
// coalesceMin datagrams or more, judged once a rate window has passed.
func TestBatchReaderBusy(t *testing.T) {
	b := &batchReader{coalesce: 500 * time.Microsecond}
	for _, tc := range []struct {
		perWindow int // datagrams in one rateWindow
		busy      bool
	}{
		{100, false}, // 1,000/s: 0.5 a coalesce
		{7000, true}, // 70,000/s: 35
		{700, false}, // 7,000/s: 3.5
		{1000, true}, // 10,000/s: 5
		{0, false},   // silence
	} {
		b.winStart, b.winCount = time.Now().Add(-rateWindow), 0
		b.measure(tc.perWindow)
		if b.busy != tc.busy {
			t.Errorf("%d datagrams in %v: busy %v, want %v", tc.perWindow, rateWindow, b.busy, tc.busy)
		}
	}
	// Within a window nothing is decided.
	b.winStart, b.winCount, b.busy = time.Now(), 0, false
	b.measure(100000)
	if b.busy {
		t.Error("busy decided before the window's end")
	}
}

// TestBatchReaderArrivals: each datagram's arrival is when the kernel
// received it, not when the reader got to it: three datagrams sent 30 ms
// apart and read 100 ms after the last keep their spacing, and the
// arrivals sit on the monotonic clock.
func TestBatchReaderArrivals(t *testing.T) {
	tx, rx := loopbackPair(t)
	b, err := newBatchReader(rx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !b.stamps {
		t.Fatal("SO_TIMESTAMPNS was refused")
	}
	var sent []time.Time
	for i := range 3 {
		if i > 0 {
			time.Sleep(30 * time.Millisecond)
		}
		sent = append(sent, time.Now())
		if _, err := tx.Write(datagram(0, i)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	for i := range 3 {
		_, _, at, err := b.Next()
		if err != nil {
			t.Fatal(err)
		}
		if b.reads != 1 {
			t.Fatalf("%d reads, want the three in one batch", b.reads)
		}
		// The kernel stamps the datagram within the sender's write.
		if d := at.Sub(sent[i]); d < -time.Millisecond || d > 10*time.Millisecond {
			t.Errorf("datagram %d: arrival %v after its send, read %v after it", i, d, b.readAt.Sub(sent[i]))
		}
		if time.Since(at) < 100*time.Millisecond || at.String() == at.Round(0).String() {
			t.Errorf("datagram %d: arrival %v ago (monotonic: %v), want its kernel time", i, time.Since(at), at.String() != at.Round(0).String())
		}
	}
}
