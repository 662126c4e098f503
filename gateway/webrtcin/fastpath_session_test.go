package webrtcin

import (
	"encoding/binary"
	"log/slog"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v2"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v2"
	"github.com/pion/webrtc/v3"
)

// TestSessionFastPath: a pion publisher's video reaches the track's
// handler whole and in order over the SRTP fast path (nearly every packet
// decrypted by castbridge, none failing; on Linux nearly every one handled
// on the socket reader, or none with inline nil), across a sequence-number wrap,
// with each SRTP profile (the gateway is the DTLS client: offers are
// actpass, RFC 8842 §5.2, and pion answers active; dtlssrtp's own tests
// take both roles);
// TWCC feedback still covers the packets; closing the session ends the
// read. With NoFastPath every packet takes pion's path.
func TestSessionFastPath(t *testing.T) {
	for _, c := range []struct {
		name    string
		profile srtp.ProtectionProfile
		noFast  bool
		inline  func() bool
	}{
		{"gcm128", srtp.ProtectionProfileAeadAes128Gcm, false, InlineAlways},
		{"gcm256", srtp.ProtectionProfileAeadAes256Gcm, false, InlineAlways},
		{"hmac-sha1-80", srtp.ProtectionProfileAes128CmHmacSha1_80, false, InlineAlways},
		{"reader goroutine", srtp.ProtectionProfileAeadAes128Gcm, false, nil},
		{"no fast path", srtp.ProtectionProfileAeadAes128Gcm, true, InlineAlways},
	} {
		t.Run(c.name, func(t *testing.T) {
			const packets = 600
			got, counters, feedback := runFastPathSession(t, c.profile, c.noFast, c.inline, packets)
			if len(got) != packets {
				t.Fatalf("%d packets read, %d sent", len(got), packets)
			}
			for i, idx := range got {
				if idx != uint32(i) {
					t.Fatalf("packet %d read is the %dth sent", i, idx)
				}
			}
			fast, fails := counters.FastRTP.Load(), counters.FastAuthFailures.Load()
			if c.noFast {
				if fast != 0 {
					t.Errorf("%d packets on the fast path with NoFastPath", fast)
				}
			} else if fast < packets*9/10 || fails != 0 {
				t.Errorf("fast path decrypted %d of %d packets, %d failed to authenticate; want over 90%% and none", fast, packets, fails)
			}
			switch inline := counters.FastInline.Load(); {
			case (c.noFast || c.inline == nil) && inline != 0:
				t.Errorf("%d packets handled on the socket reader, want none", inline)
			case !c.noFast && c.inline != nil && runtime.GOOS == "linux" && inline < packets*9/10:
				t.Errorf("%d of %d packets handled on the socket reader, want over 90%%", inline, packets)
			}
			if feedback < packets*8/10 {
				t.Errorf("TWCC feedback reported %d packets of %d", feedback, packets)
			}
		})
	}
}

// runFastPathSession publishes packets RTP packets of video (sequence
// numbers wrapping) to a session and returns the index each packet read
// carried, the session's counters and how many packets the TWCC
// feedback the publisher got reported.
func runFastPathSession(t *testing.T, profile srtp.ProtectionProfile, noFast bool, inline func() bool, packets int) ([]uint32, *Counters, int) {
	t.Helper()
	tp := listenLoopback(t, ListenConfig{NoFastPath: noFast})
	sess, err := tp.NewSession(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var readers sync.WaitGroup
	var mu sync.Mutex
	var got []uint32
	sess.OnTrack(func(track *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		readers.Go(func() {
			sess.ReadRTP(track, NewRTPStats(track.Codec().ClockRate), func(time.Time, int) {}, func(b []byte, _ time.Time) {
				var p rtp.Packet
				if p.Unmarshal(b) != nil || len(p.Payload) < 4 {
					t.Errorf("a packet read does not parse: %x", b[:min(len(b), 32)])
					return
				}
				mu.Lock()
				got = append(got, binary.BigEndian.Uint32(p.Payload))
				mu.Unlock()
			}, inline)
		})
	})

	pub, local, sender := newFastPathPublisher(t, profile)
	_, answer := connectPublisher(t, pub, sess, nil)
	if !strings.Contains(answer, "a=setup:active") {
		t.Fatalf("the answer does not make the gateway the DTLS client: %s", regexp.MustCompile(`a=setup:\S+`).FindAllString(answer, -1))
	}

	var feedback int
	rtcpDone := make(chan struct{})
	go func() {
		defer close(rtcpDone)
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if cc, ok := p.(*rtcp.TransportLayerCC); ok {
					mu.Lock()
					feedback += int(cc.PacketStatusCount)
					mu.Unlock()
				}
			}
		}
	}()

	payload := make([]byte, 1000)
	for i := range packets {
		binary.BigEndian.PutUint32(payload, uint32(i))
		// Sequence numbers from 65236: the wrap comes 300 packets in.
		if err := local.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(65236 + i), Timestamp: uint32(i/10) * 3000, Marker: i%10 == 9}, Payload: payload}); err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= packets || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(250 * time.Millisecond) // the last TWCC feedback
	if err := sess.Close(); err != nil {
		t.Error(err)
	}
	readers.Wait() // the reads end with the session
	_ = pub.Close()
	<-rtcpDone
	mu.Lock()
	defer mu.Unlock()
	return append([]uint32(nil), got...), sess.Counters(), feedback
}

// newFastPathPublisher is a pion publisher of H.264 that offers one SRTP
// profile and numbers its packets for transport-wide CC, as browsers do.
func newFastPathPublisher(t *testing.T, profile srtp.ProtectionProfile) (*webrtc.PeerConnection, *webrtc.TrackLocalStaticRTP, *webrtc.RTPSender) {
	t.Helper()
	me := &webrtc.MediaEngine{}
	h264 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
		RTCPFeedback: []webrtc.RTCPFeedback{{Type: webrtc.TypeRTCPFBTransportCC}}}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: h264, PayloadType: 102}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	reg := &interceptor.Registry{}
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(me, reg); err != nil {
		t.Fatal(err)
	}
	se := loopbackSettings()
	se.SetSRTPProtectionProfiles(dtlsProfile(profile))
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	track, err := webrtc.NewTrackLocalStaticRTP(h264, "video", "fast")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		t.Fatal(err)
	}
	return pc, track, sender
}

// dtlsProfile is profile as DTLS's use_srtp names it (the same number).
func dtlsProfile(p srtp.ProtectionProfile) dtls.SRTPProtectionProfile {
	return dtls.SRTPProtectionProfile(p)
}
