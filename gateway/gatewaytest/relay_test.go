package gatewaytest

import (
	"context"
	"math"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v3"

	"github.com/castbridge/castbridge/transmux/format/mediafile"
)

func TestRewriteAnswer(t *testing.T) {
	r, err := NewLossyRelay(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}, RelayConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	in := "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n" +
		"a=candidate:2 1 udp 2130706431 10.0.0.1 5000 typ host\r\n" +
		"a=candidate:3 1 tcp 1 127.0.0.1 5001 typ host tcptype passive\r\n" +
		"a=candidate:4 1 udp 1 1.2.3.4 6000 typ srflx raddr 0.0.0.0 rport 0 generation 0\r\n" +
		"a=end-of-candidates\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" +
		"a=candidate:4 1 udp 1 1.2.3.4 6000 typ srflx raddr 0.0.0.0 rport 0 generation 0\r\n"
	out := r.RewriteAnswer(in)
	want := "a=candidate:1 1 udp 2130706431 127.0.0.1 " + strconv.Itoa(r.Addr().Port) + " typ host\r\n"
	if strings.Count(out, "a=candidate:") != 2 || !strings.Contains(out, want) ||
		!strings.Contains(out, "a=candidate:4 1 udp 1 127.0.0.1 "+strconv.Itoa(r.Addr().Port)+" typ host generation 0\r\n") {
		t.Errorf("rewritten answer:\n%s", out)
	}
	a, err := CandidateAddr(in)
	if err != nil || a.String() != "127.0.0.1:5000" {
		t.Errorf("CandidateAddr = %v, %v", a, err)
	}
}

func TestLossyRelayWithPion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const drop = 0.1
	var relay *LossyRelay
	pub, rx := connectPublisher(t, ctx, PublisherConfig{
		VideoFile: mediafile.TestdataPath("video.h264"),
		AudioFile: mediafile.TestdataPath("audio.ogg"),
		Loop:      true,
	}, func(answer string) string {
		up, err := CandidateAddr(answer)
		if err != nil {
			t.Fatal(err)
		}
		relay, err = NewLossyRelay(up, RelayConfig{DropRTP: drop, ReorderRTP: 0.02, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { relay.Close() })
		return relay.RewriteAnswer(answer)
	})
	// the time budget counts from the connection (DTLS may retransmit once)
	waitConnected(t, ctx, pub)
	runCtx, stop := context.WithTimeout(ctx, 4*time.Second)
	defer stop()
	pub.Start(runCtx)
	pub.Wait()
	time.Sleep(500 * time.Millisecond) // retransmissions in flight

	// the media really went through the relay
	pair, err := selectedPair(pub.PeerConnection())
	if err != nil {
		t.Fatal(err)
	}
	if pair.Remote.Port != uint16(relay.Addr().Port) {
		t.Errorf("publisher's selected remote %s:%d is not the relay %s", pair.Remote.Address, pair.Remote.Port, relay.Addr())
	}
	rpair, err := selectedPair(rx.pc)
	if err != nil {
		t.Fatal(err)
	}
	if rpair.Remote.Typ != webrtc.ICECandidateTypePrflx {
		t.Errorf("receiver's selected remote is %s, want the relay's upstream socket as prflx", rpair.Remote)
	}

	d, f := relay.Dropped(), relay.Forwarded()
	rate := float64(d) / float64(d+f)
	t.Logf("relay: dropped %d, forwarded %d (%.3f), reordered %d; publisher got %d NACKs",
		d, f, rate, relay.Reordered(), pub.NACKs())
	if d+f < 300 || math.Abs(rate-drop) > 0.04 {
		t.Errorf("dropped %d of %d RTP packets (%.3f), want about %.2f", d, d+f, rate, drop)
	}
	if relay.Reordered() == 0 {
		t.Error("nothing reordered")
	}
	if pub.NACKs() == 0 {
		t.Error("publisher received no NACK")
	}
	sent := pub.Sent()
	complete, _ := rx.frames()
	intact := 0
	for _, s := range sent {
		if complete[s.RTPTimestamp] == s.Digest {
			intact++
		}
	}
	// with 10 % loss and a frame spanning several packets, most frames
	// would break without retransmissions
	t.Logf("%d of %d frames intact", intact, len(sent))
	if frac := float64(intact) / float64(len(sent)); frac < 0.8 {
		t.Errorf("only %d of %d frames intact after NACK recovery", intact, len(sent))
	}
}

func selectedPair(pc *webrtc.PeerConnection) (*webrtc.ICECandidatePair, error) {
	for _, tr := range pc.GetTransceivers() {
		var dt *webrtc.DTLSTransport
		if tr.Sender() != nil {
			dt = tr.Sender().Transport()
		}
		if dt == nil && tr.Receiver() != nil {
			dt = tr.Receiver().Transport()
		}
		if dt != nil {
			return dt.ICETransport().GetSelectedCandidatePair()
		}
	}
	return nil, net.ErrClosed
}
