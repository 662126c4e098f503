package webrtcin

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v3"

	"github.com/castbridge/castbridge/gateway/apierr"
)

// trickler is a pion publisher that trickles: its offer goes without
// candidates, which are handed over as they are gathered.
type trickler struct {
	pc *webrtc.PeerConnection
	mu sync.Mutex
	c  []string // gathered candidates, "candidate:" stripped
	up chan struct{}
}

func newTrickler(t *testing.T) *trickler {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	se := loopbackSettings()
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	tr := &trickler{pc: pc, up: make(chan struct{}, 4)}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		tr.mu.Lock()
		tr.c = append(tr.c, strings.TrimPrefix(c.ToJSON().Candidate, "candidate:"))
		tr.mu.Unlock()
	})
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateConnected {
			tr.up <- struct{}{}
		}
	})
	for _, c := range []webrtc.RTPCodecCapability{
		{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
		{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
	} {
		track, err := webrtc.NewTrackLocalStaticSample(c, strings.TrimPrefix(c.MimeType, "video/"), "trickler")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

// fragment is what a WHIP client PATCHes: its credentials and the
// candidates gathered so far under mid 0 (the bundle's first section).
func (tr *trickler) fragment(t *testing.T) Fragment {
	t.Helper()
	gathered := webrtc.GatheringCompletePromise(tr.pc)
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
		t.Fatal("publisher gathering did not finish")
	}
	f, err := ParseFragment([]byte(mustLocalFragment(t, tr.pc.LocalDescription().SDP)))
	if err != nil {
		t.Fatal(err)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(f.Candidates) == 0 || len(tr.c) == 0 {
		t.Fatalf("publisher has no candidates: %v / %v", f.Candidates, tr.c)
	}
	f.Candidates = f.Candidates[:0]
	for _, c := range tr.c {
		f.Candidates = append(f.Candidates, FragmentCandidate{Mid: "0", Value: c})
	}
	tr.c = nil
	return f
}

func mustLocalFragment(t *testing.T, sdp string) string {
	t.Helper()
	s, err := localFragment(sdp)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func waitUp(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: ICE did not connect", what)
	}
}

func codeOf(err error) apierr.Code {
	var ae *apierr.Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	return ""
}

// TestTrickleAndRestart: a publisher whose offer has no candidates connects
// on trickled ones; an ICE restart with new credentials gives the gateway
// new credentials and a new ETag, and ICE connects again on them.
func TestTrickleAndRestart(t *testing.T) {
	tp := listenLoopback(t, ListenConfig{})
	sess, err := tp.NewSession(slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	gwUp := make(chan struct{}, 4)
	sess.OnICE(func(st ICEState, _ string) {
		if st == ICEUp {
			gwUp <- struct{}{}
		}
	})
	pub := newTrickler(t)
	offer, err := pub.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(offer.SDP, "a=candidate") {
		t.Fatal("the offer carries candidates; the test needs a trickling one")
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
	etag1 := sess.ETag()
	if len(etag1) != 24 {
		t.Fatalf("etag %q", etag1)
	}
	// The publisher is not told the gateway's candidates: ICE can only
	// come up by the gateway checking the candidates trickled to it (the
	// publisher learns the gateway's address from those checks).
	if err := pub.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: withoutCandidates(answer)}); err != nil {
		t.Fatal(err)
	}
	frag := pub.fragment(t)
	if sess.IsRestart(frag) {
		t.Fatal("the publisher's first credentials read as a restart")
	}

	// A stale ETag and an unknown mid change nothing.
	stale := func(string) bool { return false }
	if err := sess.AddCandidates(stale, frag); codeOf(err) != apierr.CodeETagMismatch {
		t.Errorf("stale If-Match: %v", err)
	}
	bad := frag
	bad.Mids = []string{"7"}
	if err := sess.AddCandidates(nil, bad); codeOf(err) != apierr.CodeUnknownMid || !strings.Contains(err.Error(), `"7"`) {
		t.Errorf("unknown mid: %v", err)
	}
	select {
	case <-gwUp:
		t.Fatal("ICE connected before any candidate was trickled")
	case <-time.After(300 * time.Millisecond):
	}

	current := func(e string) bool { return e == etag1 }
	if err := sess.AddCandidates(current, frag); err != nil {
		t.Fatal(err)
	}
	waitUp(t, gwUp, "trickled")
	waitUp(t, pub.up, "trickled (publisher)")

	// ICE restart: the publisher's new credentials in a fragment.
	restart, err := pub.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.pc.SetLocalDescription(restart); err != nil {
		t.Fatal(err)
	}
	rfrag := pub.fragment(t)
	if rfrag.Ufrag == frag.Ufrag || !sess.IsRestart(rfrag) {
		t.Fatalf("restart fragment's ufrag %q (was %q) is not a restart", rfrag.Ufrag, frag.Ufrag)
	}
	if _, err := sess.Restart(ctx, stale, rfrag); codeOf(err) != apierr.CodeETagMismatch {
		t.Errorf("restart with a stale If-Match: %v", err)
	}
	gwFrag, err := sess.Restart(ctx, func(string) bool { return true }, rfrag)
	if err != nil {
		t.Fatal(err)
	}
	g, err := ParseFragment([]byte(gwFrag))
	if err != nil {
		t.Fatalf("the gateway's fragment does not parse: %v\n%s", err, gwFrag)
	}
	oldUfrag := strings.SplitN(strings.SplitN(answer, "a=ice-ufrag:", 2)[1], "\r\n", 2)[0]
	if g.Ufrag == "" || g.Ufrag == oldUfrag || g.Pwd == "" || !g.EndOfCandidates || len(g.Candidates) == 0 || g.Mids[0] != "0" {
		t.Fatalf("the gateway's restart fragment (old ufrag %q):\n%s", oldUfrag, gwFrag)
	}
	// One host candidate (the advertised address) for RTP alone: with
	// rtcp-mux there is no component 2.
	if len(g.Candidates) != 1 || !strings.Contains(g.Candidates[0].Value, " 1 udp ") ||
		!strings.Contains(g.Candidates[0].Value, "127.0.0.1 "+strconv.Itoa(tp.Port())+" typ host") {
		t.Errorf("restart candidates %v, want the ICE port %d's host candidate for component 1", g.Candidates, tp.Port())
	}
	if e := sess.ETag(); e == etag1 || len(e) != 24 {
		t.Errorf("etag after restart %q (was %q)", e, etag1)
	}
	if err := sess.AddCandidates(current, Fragment{}); codeOf(err) != apierr.CodeETagMismatch {
		t.Errorf("the first ETag still matches after the restart: %v", err)
	}

	// The publisher applies it as WHIP clients do: its last answer with
	// the new credentials (the candidates again withheld, so that ICE
	// comes back only on the gateway checking the restart's candidates
	// with the publisher's new credentials).
	ans, err := withCredentials(pub.pc.RemoteDescription().SDP, g.Ufrag, g.Pwd)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans}); err != nil {
		t.Fatal(err)
	}
	waitUp(t, gwUp, "restarted")
	waitUp(t, pub.up, "restarted (publisher)")
	pair, err := pub.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Remote.Port != uint16(tp.Port()) {
		t.Errorf("selected pair after restart: %v %v", pair, err)
	}
}

func withoutCandidates(sdp string) string {
	var out []string
	for l := range strings.SplitSeq(sdp, "\r\n") {
		if !strings.HasPrefix(l, "a=candidate:") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\r\n")
}
