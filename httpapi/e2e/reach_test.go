package e2e

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v3"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/transmux/format/flv"
)

// candidates returns the a=candidate lines of an SDP.
func candidates(sdp string) []string {
	var out []string
	for _, l := range strings.Split(sdp, "\r\n") {
		if strings.HasPrefix(l, "a=candidate:") {
			out = append(out, l)
		}
	}
	return out
}

// selectedPair is the publisher's nominated, succeeded candidate pair.
func selectedPair(t *testing.T, pc *webrtc.PeerConnection) (local, remote webrtc.ICECandidateStats) {
	t.Helper()
	stats := pc.GetStats()
	for _, s := range stats {
		p, ok := s.(webrtc.ICECandidatePairStats)
		if !ok || !p.Nominated || p.State != webrtc.StatsICECandidatePairStateSucceeded {
			continue
		}
		l, lok := stats[p.LocalCandidateID].(webrtc.ICECandidateStats)
		r, rok := stats[p.RemoteCandidateID].(webrtc.ICECandidateStats)
		if lok && rok {
			return l, r
		}
	}
	t.Fatal("the publisher has no nominated candidate pair")
	return
}

// expectLiveAVCAndAAC starts a broadcast of stream id to the harness's
// ingest as name and waits until the ingest has AVC video frames and AAC
// audio frames.
func (h *harness) expectLiveAVCAndAAC(id, name string) {
	h.t.Helper()
	h.startTargets(id, map[string]any{"output": h.ingestURL(), "streamname": name})
	const wantVideo, wantAudio = 30, 40
	deadline := time.Now().Add(15 * time.Second)
	var video, audio int
	for time.Now().Before(deadline) {
		_, msgs := h.rec.get(name)
		video, audio = len(videoFramesOf(h.t, msgs)), 0 // parseVideo fails the test on a non-AVC tag
		for _, m := range msgs {
			b := m.msg.Body
			if m.msg.Type != flv.TagAudio || len(b) < 3 {
				continue
			}
			if b[0]>>4 != 10 {
				h.t.Fatalf("audio tag sound format %d, want 10 (AAC)", b[0]>>4)
			}
			if b[1] == 1 { // a raw AAC frame, not the sequence header
				audio++
			}
		}
		if video >= wantVideo && audio >= wantAudio {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("ingest %q: %d AVC frames and %d AAC frames, want %d and %d", name, video, audio, wantVideo, wantAudio)
}

// TestICETCPPublisherGoesLive: a publisher that may use TCP only (no UDP
// candidate of its own, active ICE-TCP) reaches the gateway's passive
// ICE-TCP port, and its stream goes live to the ingest.
func TestICETCPPublisherGoesLive(t *testing.T) {
	parallel(t, light)
	h := newHarness(t, harnessOptions{iceTCP: true})
	if h.m.ICETCPPort() == 0 {
		t.Fatal("ICE-TCP is off in a gateway configured with it")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{
		VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"), Loop: true,
		Networks: []webrtc.NetworkType{webrtc.NetworkTypeTCP4},
	})

	var tcp, udp int
	for _, c := range candidates(pub.PeerConnection().RemoteDescription().SDP) {
		// a=candidate:<foundation> <component> <proto> <priority> <ip> <port> typ <type> [tcptype <t>]
		f := strings.Fields(c)
		switch got := strings.Join(append(f[2:3:3], f[4:]...), " "); got {
		case fmt.Sprintf("tcp 127.0.0.1 %d typ host tcptype passive", h.m.ICETCPPort()):
			tcp++
		case fmt.Sprintf("udp 127.0.0.1 %d typ host", h.m.ICEPort()):
			udp++
		default:
			t.Errorf("answer candidate %q is neither the advertised UDP nor the passive TCP one", c)
		}
	}
	if tcp == 0 || udp == 0 {
		t.Errorf("answer has %d TCP and %d UDP host candidates on 127.0.0.1, want both", tcp, udp)
	}

	local, remote := selectedPair(t, pub.PeerConnection())
	if local.Protocol != "tcp" || remote.Protocol != "tcp" || int(remote.Port) != h.m.ICETCPPort() || remote.IP != "127.0.0.1" {
		t.Errorf("selected pair %s %s:%d -> %s %s:%d, want tcp to 127.0.0.1:%d",
			local.Protocol, local.IP, local.Port, remote.Protocol, remote.IP, remote.Port, h.m.ICETCPPort())
	}

	h.expectLiveAVCAndAAC(id, "over-tcp")
	sv := h.waitState(id, "live", time.Second)
	if sv.Video == nil || sv.Video.Codec != "H264" || sv.Video.Width == 0 {
		t.Errorf("stream view over TCP: %s", toJSON(sv))
	}
	if st := h.streamStats(id); st.RTTMs <= 0 {
		t.Errorf("stream stats over TCP: no round-trip time measured on the selected pair: %+v", st)
	}
}

// TestICETCPIdleConnectionEnds: the ICE-TCP port ends a connection that
// never sends its first STUN request.
func TestICETCPIdleConnectionEnds(t *testing.T) {
	parallel(t, light)
	h := newHarness(t, harnessOptions{iceTCP: true})
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", h.m.ICETCPPort()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := c.Read(make([]byte, 1))
	took := time.Since(start)
	if n != 0 || err == nil {
		t.Fatalf("a connection that sent nothing: read %d bytes, err %v; want it closed", n, err)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("a connection that sent nothing was still open after %v", took)
	}
	// The first-STUN timeout is 5 s; allow for a loaded machine.
	if took < 4*time.Second || took > 15*time.Second {
		t.Errorf("a silent connection was closed after %v, want about 5 s", took)
	}
}

// TestIPv6Publisher: a publisher with only an IPv6 candidate ([::1])
// reaches the gateway's IPv6 socket (advertised as ::1 beside 127.0.0.1)
// and goes live.
func TestIPv6Publisher(t *testing.T) {
	parallel(t, light)
	if out, err := exec.Command("ip", "-6", "addr", "show", "dev", "lo").Output(); err != nil || !strings.Contains(string(out), "::1/128") {
		t.Skipf("IPv6 TEST NOT RUN: this machine has no ::1 on lo (ip -6 addr: %q, %v)", out, err)
	}
	h := newHarness(t, harnessOptions{iceTCP: true, iceIPs: []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{
		VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"), Loop: true,
		Networks: []webrtc.NetworkType{webrtc.NetworkTypeUDP6},
	})
	offer := candidates(pub.PeerConnection().LocalDescription().SDP)
	for _, c := range offer {
		if !strings.Contains(c, " ::1 ") {
			t.Errorf("the publisher offered %q, want only [::1] candidates", c)
		}
	}
	answer := strings.Join(candidates(pub.PeerConnection().RemoteDescription().SDP), "\n")
	if want := fmt.Sprintf(" ::1 %d typ host", h.m.ICEPort()); !strings.Contains(answer, want) {
		t.Errorf("the answer has no candidate%q: %s", want, answer)
	}
	local, remote := selectedPair(t, pub.PeerConnection())
	if local.IP != "::1" || remote.IP != "::1" || local.Protocol != "udp" || int(remote.Port) != h.m.ICEPort() {
		t.Errorf("selected pair %s [%s]:%d -> [%s]:%d, want udp [::1] -> [::1]:%d",
			local.Protocol, local.IP, local.Port, remote.IP, remote.Port, h.m.ICEPort())
	}
	h.expectLiveAVCAndAAC(id, "over-ipv6")
}

// TestRTMPSPrivateCAIngest: an rtmps:// ingest whose certificate a
// private CA issued fails with the system's roots, INGEST_UNREACHABLE
// naming the certificate problem and the way out; given the CA
// (gateway.Config.RTMPSRootCAs, from --rtmps-ca) the push goes live.
func TestRTMPSPrivateCAIngest(t *testing.T) {
	parallel(t, light)
	ca, err := gatewaytest.NewPrivateCA()
	if err != nil {
		t.Fatal(err)
	}
	const key = "tls-secret-key"
	run := func(t *testing.T, roots *x509.CertPool) (*harness, string, string) {
		h := newHarness(t, harnessOptions{rtmpsRootCAs: roots})
		front, err := gatewaytest.NewTLSFront(ca.Server, h.ingest.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = front.Close() })
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		_, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"), Loop: true})
		return h, id, "rtmps://" + front.Addr() + "/live"
	}

	t.Run("untrusted", func(t *testing.T) {
		h, id, output := run(t, nil)
		e := h.expectError("POST", "/v1/streams/"+id+"/broadcast",
			map[string]any{"transcodingTargets": map[string]any{"output": output, "streamname": key}}, 502, "INGEST_UNREACHABLE")
		for _, want := range []string{"certificate signed by unknown authority", "--rtmps-ca", "SSL_CERT_FILE", output} {
			if !strings.Contains(e.Error.Message, want) {
				t.Errorf("message %q does not say %q", e.Error.Message, want)
			}
		}
		if strings.Contains(e.Error.Message, key) || strings.Contains(h.logs.String(), key) {
			t.Errorf("the stream key leaked into the message or the logs: %q", e.Error.Message)
		}
		if _, msgs := h.rec.get(key); len(msgs) != 0 {
			t.Errorf("the ingest got %d messages through an untrusted connection", len(msgs))
		}
	})
	t.Run("private CA", func(t *testing.T) {
		h, id, output := run(t, ca.Pool)
		h.startTargets(id, map[string]any{"output": output, "streamname": key})
		if got := h.waitFrames(key, 30, 15*time.Second); got < 30 {
			t.Fatalf("ingest behind TLS: %d video frames, want 30", got)
		}
		if strings.Contains(h.logs.String(), key) {
			t.Error("the stream key leaked into the logs")
		}
	})
}
