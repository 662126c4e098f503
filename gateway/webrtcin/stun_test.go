package webrtcin

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v2"
	"github.com/pion/stun"
	"github.com/pion/webrtc/v3"
)

// fakeSTUN answers binding requests with a mapped address of the test's
// choosing (a real server reflects the request's source), and records
// where the requests came from.
type fakeSTUN struct {
	conn     *net.UDPConn
	mapped   atomic.Pointer[netip.AddrPort]
	requests atomic.Int32
	mu       sync.Mutex
	sources  []netip.AddrPort
}

func newFakeSTUN(t *testing.T, mapped netip.AddrPort) *fakeSTUN {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSTUN{conn: c}
	f.mapped.Store(&mapped)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if m.Decode() != nil || m.Type != stun.BindingRequest {
				continue
			}
			f.requests.Add(1)
			f.mu.Lock()
			f.sources = append(f.sources, from)
			f.mu.Unlock()
			to := f.mapped.Load()
			resp, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
				&stun.XORMappedAddress{IP: to.Addr().AsSlice(), Port: int(to.Port())}, stun.Fingerprint)
			if err != nil {
				panic(err)
			}
			_, _ = c.WriteToUDPAddrPort(resp.Raw, from)
		}
	}()
	t.Cleanup(func() {
		_ = c.Close()
		<-done
	})
	return f
}

func (f *fakeSTUN) addr() string { return f.conn.LocalAddr().String() }

// lockedBuffer is a goroutine-safe log sink.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func listenSTUN(t *testing.T, cfg ListenConfig) (*Transport, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tr, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr, logs
}

// answerFrom answers a pion publisher's offer (all its candidates
// gathered) on the transport and returns the answer.
func answerFrom(t *testing.T, tr *Transport) string {
	t.Helper()
	pub := newTrickler(t)
	offer, err := pub.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pub.pc)
	if err := pub.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	om, err := InspectOffer(pub.pc.LocalDescription().SDP)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := tr.NewSession(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	answer, err := sess.Answer(ctx, om)
	if err != nil {
		t.Fatal(err)
	}
	return answer
}

// answerCandidates parses the answer's a=candidate lines.
func answerCandidates(t *testing.T, answer string) []ice.Candidate {
	t.Helper()
	var out []ice.Candidate
	for _, l := range strings.Split(answer, "\r\n") {
		if v, ok := strings.CutPrefix(l, "a=candidate:"); ok {
			c, err := ice.UnmarshalCandidate(v)
			if err != nil {
				t.Fatalf("answer candidate %q: %v", l, err)
			}
			out = append(out, c)
		}
	}
	return out
}

// TestSTUNSrflxInAnswer: with a STUN server, the answer carries the
// mapped address it gave as a srflx candidate on the ICE port, related
// to the port's own address, below the host candidates in priority; the
// query goes out of the ICE socket itself; the address is logged.
func TestSTUNSrflxInAnswer(t *testing.T) {
	public := netip.MustParseAddrPort("203.0.113.7:40123")
	srv := newFakeSTUN(t, public)
	tr, logs := listenSTUN(t, ListenConfig{STUNServer: srv.addr(), STUNTimeout: 2 * time.Second})

	st := tr.STUN()
	if !st.Up || st.Mapped != public || st.Server != srv.addr() || st.Queries != 1 || st.Failures != 0 {
		t.Fatalf("STUN status after start: %+v, want up with %s after one query", st, public)
	}
	srv.mu.Lock()
	sources := append([]netip.AddrPort(nil), srv.sources...)
	srv.mu.Unlock()
	if len(sources) == 0 || int(sources[0].Port()) != tr.Port() {
		t.Errorf("STUN requests came from %v, want the ICE port %d", sources, tr.Port())
	}
	if l := logs.String(); !strings.Contains(l, "level=INFO") || !strings.Contains(l, "public_addr="+public.String()) {
		t.Errorf("the learned address is not logged at INFO:\n%s", l)
	}

	answer := answerFrom(t, tr)
	var srflx, host int
	var hostPrio uint32
	components := map[uint16]int{}
	for _, c := range answerCandidates(t, answer) {
		switch c.Type() {
		case ice.CandidateTypeHost:
			host++
			hostPrio = max(hostPrio, c.Priority())
		case ice.CandidateTypeServerReflexive:
			srflx++
			components[c.Component()]++
			r := c.RelatedAddress()
			if c.Address() != "203.0.113.7" || c.Port() != 40123 || c.NetworkType() != ice.NetworkTypeUDP4 || r == nil || r.Port != tr.Port() {
				t.Errorf("srflx candidate %q: want udp 203.0.113.7 40123 related to the ICE port %d", c.Marshal(), tr.Port())
			}
			if c.Component() == ice.ComponentRTP && c.Priority() >= hostPrio {
				t.Errorf("srflx priority %d is not below the host candidates' %d", c.Priority(), hostPrio)
			}
		}
	}
	if host == 0 || srflx == 0 || components[1] == 0 || components[1] != components[2] || components[1]+components[2] != srflx {
		t.Fatalf("answer has %d host and %d srflx candidates, want host ones and srflx ones for components 1 and 2:\n%s", host, srflx, answer)
	}
	if want := " 203.0.113.7 40123 typ srflx raddr "; !strings.Contains(answer, want) {
		t.Errorf("answer has no %q", want)
	}
	// The ICE restart fragment takes the RTP component's candidates of
	// the answer's first section: the srflx one among them.
	frag, err := localFragment(answer)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(frag, " 1 udp ") || !strings.Contains(frag, "203.0.113.7 40123 typ srflx") {
		t.Errorf("ICE fragment from the answer lacks the srflx candidate:\n%s", frag)
	}
}

// TestSTUNRefresh: the address is asked again; a changed mapping replaces
// the advertised one and is logged.
func TestSTUNRefresh(t *testing.T) {
	first, second := netip.MustParseAddrPort("203.0.113.7:40123"), netip.MustParseAddrPort("198.51.100.9:50000")
	srv := newFakeSTUN(t, first)
	tr, logs := listenSTUN(t, ListenConfig{STUNServer: srv.addr(), STUNTimeout: time.Second, STUNRefresh: 50 * time.Millisecond})
	if got := tr.STUN().Mapped; got != first {
		t.Fatalf("mapped %s, want %s", got, first)
	}
	srv.mapped.Store(&second)
	deadline := time.Now().Add(5 * time.Second)
	for tr.STUN().Mapped != second && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := tr.STUN(); st.Mapped != second || st.Queries < 2 {
		t.Fatalf("after the mapping changed: %+v, want %s", st, second)
	}
	answer := answerFrom(t, tr)
	if !strings.Contains(answer, "198.51.100.9 50000 typ srflx") || strings.Contains(answer, "203.0.113.7") {
		t.Errorf("answer after the change does not carry only the new address:\n%s", answer)
	}
	if !strings.Contains(logs.String(), "public address changed") {
		t.Errorf("the change is not logged:\n%s", logs.String())
	}
}

// TestSTUNUnreachable: a STUN server that never answers costs one
// timeout at start and a WARN; answers carry host candidates only.
func TestSTUNUnreachable(t *testing.T) {
	hole, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	var got atomic.Int32
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := hole.ReadFrom(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	const timeout = 800 * time.Millisecond
	start := time.Now()
	tr, logs := listenSTUN(t, ListenConfig{STUNServer: hole.LocalAddr().String(), STUNTimeout: timeout})
	took := time.Since(start)
	if took < timeout || took > timeout+time.Second {
		t.Errorf("Listen took %v with an unanswering STUN server, want about its timeout %v", took, timeout)
	}
	if n := got.Load(); n < 2 {
		t.Errorf("the STUN server got %d requests in %v, want retransmissions", n, timeout)
	}
	l := logs.String()
	if !strings.Contains(l, "level=WARN") || !strings.Contains(l, "host candidates only") || !strings.Contains(l, hole.LocalAddr().String()) {
		t.Errorf("no clear WARN naming the server:\n%s", l)
	}
	if st := tr.STUN(); st.Up || st.Mapped.IsValid() || st.Failures != 1 {
		t.Errorf("status %+v, want down, no address, one failure", st)
	}
	answer := answerFrom(t, tr)
	cands := answerCandidates(t, answer)
	if len(cands) == 0 {
		t.Fatal("answer has no candidates")
	}
	for _, c := range cands {
		if c.Type() != ice.CandidateTypeHost {
			t.Errorf("answer candidate %q is not a host one", c.Marshal())
		}
	}
}

// TestSTUNNotAskedWithIPs: advertised addresses are the public ones;
// the STUN server is never contacted.
func TestSTUNNotAskedWithIPs(t *testing.T) {
	srv := newFakeSTUN(t, netip.MustParseAddrPort("203.0.113.7:40123"))
	tr, logs := listenSTUN(t, ListenConfig{STUNServer: srv.addr(), IPs: []net.IP{net.IPv4(127, 0, 0, 1).To4()}})
	answer := answerFrom(t, tr)
	time.Sleep(50 * time.Millisecond)
	if n := srv.requests.Load(); n != 0 {
		t.Errorf("the STUN server got %d requests with --ice-ips given", n)
	}
	if strings.Contains(answer, "srflx") {
		t.Errorf("answer has a srflx candidate:\n%s", answer)
	}
	if !strings.Contains(logs.String(), "STUN not asked") {
		t.Errorf("no warning that STUN is not asked:\n%s", logs.String())
	}
	if st := tr.STUN(); st.Server != "" {
		t.Errorf("status %+v, want STUN off", st)
	}
}

// TestSTUNConnTakesOnlyItsAnswers: the ICE socket's reader takes out
// a response only when it comes from the server asked and carries the
// query's transaction id; everything else reaches pion's mux. Both ways
// of reading the socket (recvmmsg batches, a datagram a call).
func TestSTUNConnTakesOnlyItsAnswers(t *testing.T) {
	_, probe := loopbackPair(t)
	for kind := range addrConnKinds(t, probe) {
		t.Run(kind, func(t *testing.T) { testSTUNConnTakesOnlyItsAnswers(t, kind) })
	}
}

func testSTUNConnTakesOnlyItsAnswers(t *testing.T, kind string) {
	server, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	c := newSTUNConn(sock)
	mux := newDivertConn(addrConnKinds(t, sock)[kind], nil, c)

	type read struct {
		b    []byte
		from string
	}
	reads := make(chan read, 8)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := mux.ReadFrom(buf)
			if err != nil {
				close(reads)
				return
			}
			reads <- read{append([]byte(nil), buf[:n]...), from.String()}
		}
	}()
	result := make(chan error, 1)
	var mapped netip.AddrPort
	go func() {
		var err error
		mapped, err = c.query(context.Background(), server.LocalAddr().String(), 5*time.Second)
		result <- err
	}()
	buf := make([]byte, 1500)
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, client, err := server.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
	if err := req.Decode(); err != nil || req.Type != stun.BindingRequest {
		t.Fatalf("query sent %v (%v), want a binding request", req.Type, err)
	}
	answer := func(id [stun.TransactionIDSize]byte, ip string) []byte {
		m, err := stun.Build(stun.NewTransactionIDSetter(id), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: net.ParseIP(ip), Port: 4000})
		if err != nil {
			t.Fatal(err)
		}
		return m.Raw
	}
	wrongID := req.TransactionID
	wrongID[0] ^= 0xff
	// A spoofer who knows the id but not the server's address, and the
	// server with another id (an ICE agent's check): both pass through.
	for _, p := range []struct {
		conn *net.UDPConn
		b    []byte
	}{{other, answer(req.TransactionID, "192.0.2.66")}, {server, answer(wrongID, "192.0.2.67")}} {
		if _, err := p.conn.WriteToUDP(p.b, client); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-reads:
			if string(r.b) != string(p.b) {
				t.Errorf("the mux read %x, want the packet passed through", r.b)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a response to no query of ours did not reach the mux")
		}
	}
	if _, err := server.WriteToUDP(answer(req.TransactionID, "203.0.113.7"), client); err != nil {
		t.Fatal(err)
	}
	if err := <-result; err != nil {
		t.Fatal(err)
	}
	if mapped != netip.MustParseAddrPort("203.0.113.7:4000") {
		t.Errorf("mapped %s, want 203.0.113.7:4000", mapped)
	}
	select {
	case r := <-reads:
		t.Errorf("the query's answer reached the mux: %x", r.b)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestParseBindingResponse: what a response says, and what is refused.
func TestParseBindingResponse(t *testing.T) {
	build := func(setters ...stun.Setter) []byte {
		m, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
		if err != nil {
			t.Fatal(err)
		}
		return m.Raw
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string // mapped address or an error's text
	}{
		{"xor", build(stun.BindingSuccess, &stun.XORMappedAddress{IP: net.IPv4(203, 0, 113, 7), Port: 19302}), "203.0.113.7:19302"},
		{"plain", build(stun.BindingSuccess, &stun.MappedAddress{IP: net.IPv4(203, 0, 113, 8), Port: 1}), "203.0.113.8:1"},
		{"ipv6", build(stun.BindingSuccess, &stun.XORMappedAddress{IP: net.ParseIP("2001:db8::1"), Port: 1}), "not an IPv4 address"},
		{"unspecified", build(stun.BindingSuccess, &stun.XORMappedAddress{IP: net.IPv4zero, Port: 1}), "not an IPv4 address"},
		{"no address", build(stun.BindingSuccess), "without a mapped address"},
		{"error", build(stun.BindingError, stun.CodeServerError), "binding error 500"},
		{"request", build(stun.BindingRequest), errNotBindingResponse.Error()},
		{"garbage", []byte{0, 1, 0, 0, 0x21, 0x12}, errNotBindingResponse.Error()},
	} {
		_, got, err := parseBindingResponse(tc.b)
		s := got.String()
		if err != nil {
			s = err.Error()
		}
		if !strings.Contains(s, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, s, tc.want)
		}
	}
}

// TestWithCandidates: added candidates go after pion's, before
// a=end-of-candidates, in every section that has candidates.
func TestWithCandidates(t *testing.T) {
	in := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n" +
		"m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 10.0.0.2 8189 typ host\r\na=end-of-candidates\r\n" +
		"m=audio 0 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n"
	out, err := withCandidates(in, []string{"2 1 udp 1694498815 203.0.113.7 8189 typ srflx raddr 10.0.0.2 rport 8189"})
	if err != nil {
		t.Fatal(err)
	}
	want := "a=candidate:1 1 udp 2130706431 10.0.0.2 8189 typ host\r\na=candidate:2 1 udp 1694498815 203.0.113.7 8189 typ srflx raddr 10.0.0.2 rport 8189\r\na=end-of-candidates\r\n"
	if !strings.Contains(out, want) || strings.Count(out, "typ srflx") != 1 {
		t.Errorf("withCandidates:\n%s\nwant the srflx line once, after the host one:\n%s", out, want)
	}
	if same, _ := withCandidates(in, nil); same != in {
		t.Error("no candidates must leave the answer as it is")
	}
}

// FuzzParseBindingResponse: any datagram is either a binding response's
// IPv4 mapped address (a usable one) or an error; never a panic.
func FuzzParseBindingResponse(f *testing.F) {
	for _, setters := range [][]stun.Setter{
		{stun.TransactionID, stun.BindingSuccess, &stun.XORMappedAddress{IP: net.IPv4(203, 0, 113, 7), Port: 19302}, stun.Fingerprint},
		{stun.TransactionID, stun.BindingSuccess, &stun.MappedAddress{IP: net.IPv4(203, 0, 113, 7), Port: 3478}},
		{stun.TransactionID, stun.BindingError, stun.CodeBadRequest},
		{stun.TransactionID, stun.BindingRequest, stun.Fingerprint},
	} {
		m, err := stun.Build(setters...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.Raw)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, mapped, err := parseBindingResponse(b)
		if err != nil {
			if mapped.IsValid() {
				t.Fatalf("error %v with an address %s", err, mapped)
			}
			return
		}
		if !mapped.Addr().Is4() || mapped.Addr().IsUnspecified() || mapped.Port() == 0 {
			t.Fatalf("mapped %s accepted", mapped)
		}
	})
}

// TestSTUNSrflxInRestart: an ICE restart's fragment carries the public
// address too (RTP component only, as the rest of the fragment).
func TestSTUNSrflxInRestart(t *testing.T) {
	srv := newFakeSTUN(t, netip.MustParseAddrPort("203.0.113.7:40123"))
	tr, _ := listenSTUN(t, ListenConfig{STUNServer: srv.addr(), STUNTimeout: 2 * time.Second})
	sess, err := tr.NewSession(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	pub := newTrickler(t)
	offer, err := pub.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	om, err := InspectOffer(offer.SDP)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := sess.Answer(ctx, om)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	restart, err := pub.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.pc.SetLocalDescription(restart); err != nil {
		t.Fatal(err)
	}
	gwFrag, err := sess.Restart(ctx, func(string) bool { return true }, pub.fragment(t))
	if err != nil {
		t.Fatal(err)
	}
	g, err := ParseFragment([]byte(gwFrag))
	if err != nil {
		t.Fatal(err)
	}
	var srflx []string
	for _, c := range g.Candidates {
		if strings.Contains(c.Value, " typ srflx") {
			srflx = append(srflx, c.Value)
		}
	}
	if len(srflx) != 1 || !strings.Contains(srflx[0], " 1 udp ") || !strings.Contains(srflx[0], "203.0.113.7 40123 typ srflx raddr ") {
		t.Errorf("restart fragment's srflx candidates %q, want the public address for component 1:\n%s", srflx, gwFrag)
	}
}

// TestSocketReaderBatchesWithSTUN: the IPv4 socket that the STUN client
// uses is read in recvmmsg batches like any other, with or without the
// fast path (it used to be read a datagram a call through the STUN
// client).
func TestSocketReaderBatchesWithSTUN(t *testing.T) {
	_, sock := loopbackPair(t)
	stunClient := newSTUNConn(sock)
	for _, tc := range []struct {
		name   string
		fast   *fastTable
		stun   *stunConn
		divert bool
	}{
		{"stun", nil, stunClient, true},
		{"fast path and stun", &fastTable{}, stunClient, true},
		{"fast path", &fastTable{}, nil, true},
		{"neither", nil, nil, false},
	} {
		pc := socketReader(newCachedAddrConn(sock, 0), tc.fast, tc.stun)
		var cc *cachedAddrConn
		switch c := pc.(type) {
		case divertConn:
			if !tc.divert || c.fast != tc.fast || c.stun != tc.stun {
				t.Errorf("%s: a divertConn with fast path %v and STUN %v", tc.name, c.fast != nil, c.stun != nil)
			}
			cc = c.cachedAddrConn
		case *cachedAddrConn:
			if tc.divert {
				t.Errorf("%s: nothing taken out of the socket", tc.name)
			}
			cc = c
		default:
			t.Fatalf("%s: read through %T", tc.name, pc)
		}
		if runtime.GOOS == "linux" && cc.batch == nil {
			t.Errorf("%s: not read in recvmmsg batches", tc.name)
		}
	}
}

// TestSTUNTakeMalformedAnswer: an answer from the server asked, with the
// query's id, whose XOR-MAPPED-ADDRESS is empty (pion/stun v0.6.1 panicked
// on it) reaches the query as an error; the same bytes from elsewhere are
// not even parsed, and pass through.
func TestSTUNTakeMalformedAnswer(t *testing.T) {
	_, sock := loopbackPair(t)
	c := newSTUNConn(sock)
	server := netip.MustParseAddrPort("192.0.2.1:3478")
	// A binding success whose only attribute is XOR-MAPPED-ADDRESS of
	// length 0 (the fuzzer's input, with the transaction id set).
	b := []byte("\x01\x01\x00\x04\x21\x12\xa4\x42abcdefghijkl\x00\x20\x00\x00")
	var id [stun.TransactionIDSize]byte
	copy(id[:], "abcdefghijkl")
	w := stunWait{server: server, answer: make(chan stunAnswer, 1)}
	c.pending[id] = w
	c.waiting.Add(1)
	if c.take(b, netip.MustParseAddrPort("198.51.100.9:3478")) {
		t.Error("an answer from another address was taken")
	}
	if !c.take(b, server) {
		t.Fatal("the server's answer to the query was not taken")
	}
	select {
	case a := <-w.answer:
		if a.err == nil || !strings.Contains(a.err.Error(), "without a mapped address") {
			t.Errorf("answer %+v, want the missing address as an error", a)
		}
	default:
		t.Fatal("the query got no answer")
	}
}
