package webrtcin

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v2"
	"github.com/pion/webrtc/v3"
)

// loopbackSettings are a test publisher's pion settings: IPv4 UDP on the
// loopback interface only, no mDNS.
func loopbackSettings() webrtc.SettingEngine {
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return se
}

// listenLoopback is a transport advertising 127.0.0.1, closed with the test.
func listenLoopback(t *testing.T, cfg ListenConfig) *Transport {
	t.Helper()
	cfg.IPs = []net.IP{net.IPv4(127, 0, 0, 1)}
	cfg.Logger = slog.New(slog.DiscardHandler)
	tp, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tp.Close() })
	return tp
}

// connectPublisher has pub offer (with all its candidates, rewritten by
// edit when not nil) to sess, gives it sess's answer and waits for pub's
// ICE and DTLS to connect. It returns the inspected offer and the answer.
func connectPublisher(t *testing.T, pub *webrtc.PeerConnection, sess *Session, edit func(string) string) (OfferMedia, string) {
	t.Helper()
	offer, err := pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pub)
	if err := pub.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	sdp := pub.LocalDescription().SDP
	if edit != nil {
		sdp = edit(sdp)
	}
	om, err := InspectOffer(sdp)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	answer, err := sess.Answer(ctx, om)
	if err != nil {
		t.Fatal(err)
	}
	up := make(chan struct{})
	var once sync.Once
	pub.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(up) })
		}
	})
	if err := pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	waitUp(t, up, "publisher")
	return om, answer
}
