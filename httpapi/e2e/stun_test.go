package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v2"
	"github.com/pion/webrtc/v3"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
)

// startSTUNServer runs pion's TURN server, which answers STUN binding
// requests without credentials, on 127.0.0.1 until the test ends.
func startSTUNServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := turn.NewServer(turn.ServerConfig{
		Realm:       "castbridge.test",
		AuthHandler: func(string, string, net.Addr) ([]byte, bool) { return nil, false }, // no allocations: STUN only
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn:            pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{RelayAddress: net.IPv4(127, 0, 0, 1), Address: "127.0.0.1"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return pc.LocalAddr().String()
}

// onlySrflx keeps the srflx candidates of an answer and drops the rest,
// so a publisher can reach the gateway by its public address alone.
func onlySrflx(t *testing.T, answer string) string {
	t.Helper()
	var out []string
	kept := 0
	for _, l := range strings.Split(answer, "\r\n") {
		if strings.HasPrefix(l, "a=candidate:") {
			if !strings.Contains(l, " typ srflx ") {
				continue
			}
			kept++
		}
		out = append(out, l)
	}
	if kept == 0 {
		t.Fatalf("the answer has no srflx candidate:\n%s", answer)
	}
	return strings.Join(out, "\r\n")
}

// withoutOfferCandidates drops an offer's candidates: the gateway learns
// the publisher's address from its checks alone (peer-reflexive), as
// behind a NAT, and cannot reach it around the path under test (on
// loopback it could check the publisher's host candidate directly).
func withoutOfferCandidates(offer string) string {
	var out []string
	for _, l := range strings.Split(offer, "\r\n") {
		if !strings.HasPrefix(l, "a=candidate:") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\r\n")
}

// publishSrflxOnly publishes with the answer's srflx candidates alone (and
// an offer without candidates) and returns the publisher, the stream and
// the gateway's full answer.
func (h *harness) publishSrflxOnly(ctx context.Context) (*gatewaytest.Publisher, string, string) {
	h.t.Helper()
	pub, err := gatewaytest.NewPublisher(gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"), Loop: true})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = pub.Close() })
	offer, err := pub.Offer(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var sv streamView
	if st, raw := h.call("POST", "/v1/streams", map[string]any{"sdp": withoutOfferCandidates(offer), "name": "srflx"}, &sv); st != http.StatusCreated {
		h.t.Fatalf("create stream: %d %s", st, raw)
	}
	if err := pub.SetAnswer(onlySrflx(h.t, sv.SDP)); err != nil {
		h.t.Fatal(err)
	}
	pub.Start(ctx)
	h.waitState(sv.ID, "connected", 10*time.Second)
	return pub, sv.ID, sv.SDP
}

// TestSTUNPublicAddressGoesLive: with --stun at a real STUN server (pion's
// TURN server on loopback), the gateway learns its address from the ICE
// port, answers it as a srflx candidate on that port, reports it in
// /metrics, and a publisher given only that candidate goes live.
func TestSTUNPublicAddressGoesLive(t *testing.T) {
	parallel(t, light)
	server := startSTUNServer(t)
	h := newHarness(t, harnessOptions{stun: server})
	public := fmt.Sprintf("127.0.0.1:%d", h.m.ICEPort()) // what a server sees on loopback
	if st := h.m.STUN(); !st.Up || st.Mapped.String() != public || st.Server != server {
		t.Fatalf("STUN status %+v, want up with %s from %s", st, public, server)
	}
	if l := h.logs.String(); !strings.Contains(l, "public_addr="+public) {
		t.Errorf("the learned address is not logged:\n%s", l)
	}
	if m := h.get("/metrics"); !strings.Contains(m, fmt.Sprintf("castbridge_ice_public_address_info{address=%q} 1", public)) || !strings.Contains(m, "castbridge_ice_stun_up 1") {
		t.Errorf("metrics do not show the public address %s:\n%s", public, m)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id, answer := h.publishSrflxOnly(ctx)
	if want := fmt.Sprintf(" 127.0.0.1 %d typ srflx raddr ", h.m.ICEPort()); !strings.Contains(answer, want) {
		t.Errorf("the answer has no candidate%q:\n%s", want, answer)
	}
	_, remote := selectedPair(t, pub.PeerConnection())
	if remote.CandidateType != webrtc.ICECandidateTypeSrflx || remote.IP != "127.0.0.1" || int(remote.Port) != h.m.ICEPort() {
		t.Errorf("selected remote candidate %s %s:%d, want srflx 127.0.0.1:%d", remote.CandidateType, remote.IP, remote.Port, h.m.ICEPort())
	}
	h.expectLiveAVCAndAAC(id, "over-srflx")
}

// TestSTUNBehindNATGoesLive: the gateway behind a port-forwarding NAT (a
// UDP relay to its ICE port, the relay's address being what the STUN
// server reports): the answer's srflx candidate is the NAT's address,
// which no host candidate has, and a publisher given only it reaches the
// gateway through the NAT and goes live.
func TestSTUNBehindNATGoesLive(t *testing.T) {
	parallel(t, light)
	// The NAT forwards to the ICE port, which must be known before the
	// gateway asks STUN at start: take a free one.
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	port := probe.LocalAddr().(*net.UDPAddr).Port
	_ = probe.Close()
	nat, err := gatewaytest.NewLossyRelay(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}, gatewaytest.RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer nat.Close()
	responder, err := gatewaytest.StartSTUNResponder(nat.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer responder.Close()
	h := newHarness(t, harnessOptions{stun: responder.Addr(), iceUDPPort: port})
	if h.m.ICEPort() != port {
		t.Fatalf("ICE port %d, want %d", h.m.ICEPort(), port)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id, answer := h.publishSrflxOnly(ctx)
	want := fmt.Sprintf(" %s %d typ srflx raddr ", nat.Addr().IP, nat.Addr().Port)
	if !strings.Contains(answer, want) {
		t.Fatalf("the answer has no candidate%q:\n%s", want, answer)
	}
	for _, c := range candidates(answer) {
		if strings.Contains(c, " typ host") && strings.Contains(c, fmt.Sprintf(" %d typ", nat.Addr().Port)) {
			t.Errorf("a host candidate has the NAT's port: %q", c)
		}
	}
	_, remote := selectedPair(t, pub.PeerConnection())
	if remote.CandidateType != webrtc.ICECandidateTypeSrflx || int(remote.Port) != nat.Addr().Port {
		t.Errorf("selected remote candidate %s %s:%d, want srflx %s", remote.CandidateType, remote.IP, remote.Port, nat.Addr())
	}
	h.expectLiveAVCAndAAC(id, "behind-nat")
	if n := nat.Forwarded(); n < 100 {
		t.Errorf("the NAT forwarded %d packets, want the media through it", n)
	} else {
		t.Logf("the NAT forwarded %d RTP packets; %d STUN requests answered", n, responder.Requests())
	}
}

// TestSTUNUnreachable: a STUN server that never answers costs the start
// one timeout and a WARN naming it; the gateway serves host candidates,
// and a publisher goes live on them.
func TestSTUNUnreachable(t *testing.T) {
	parallel(t, light)
	hole, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	const timeout = time.Second
	start := time.Now()
	h := newHarness(t, harnessOptions{stun: hole.LocalAddr().String(), stunTimeout: timeout})
	took := time.Since(start)
	if took < timeout || took > timeout+2*time.Second {
		t.Errorf("the gateway took %v to start with an unanswering STUN server, want about its timeout %v", took, timeout)
	}
	t.Logf("start with an unanswering STUN server took %v (timeout %v)", took, timeout)
	warned := false
	for _, l := range strings.Split(h.logs.String(), "\n") {
		warned = warned || (strings.Contains(l, "level=WARN") && strings.Contains(l, "host candidates only") && strings.Contains(l, hole.LocalAddr().String()))
	}
	if !warned {
		t.Errorf("no WARN naming the STUN server:\n%s", h.logs.String())
	}
	if st := h.m.STUN(); st.Up || st.Mapped.IsValid() || st.Failures != 1 {
		t.Errorf("STUN status %+v, want down, no address, one failure", st)
	}
	m := h.get("/metrics")
	if !strings.Contains(m, "castbridge_ice_stun_up 0") || !strings.Contains(m, "castbridge_ice_stun_failures_total 1") || strings.Contains(m, "castbridge_ice_public_address_info") {
		t.Errorf("metrics with an unanswering STUN server:\n%s", m)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"), Loop: true})
	if a := pub.PeerConnection().RemoteDescription().SDP; strings.Contains(a, "srflx") {
		t.Errorf("the answer has a srflx candidate with no STUN answer:\n%s", a)
	}
	h.expectLiveAVCAndAAC(id, "host-only")
}
