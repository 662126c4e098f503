package webrtcin

import (
	"log/slog"
	"maps"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v3"
)

// TestPayloadMIDs: only offers pion cannot demultiplex get a payload-type
// table: GStreamer's default-caps offer (two bundled sections, no a=ssrc,
// no extensions); not the offers that declare their SSRCs, and not a
// payload type two sections share.
func TestPayloadMIDs(t *testing.T) {
	cases := []struct {
		file string
		want map[uint8]string
	}{
		{"gstreamer-default-caps.sdp", map[uint8]string{96: "video0", 97: "audio1"}},
		{"gstreamer-max-bundle.sdp", nil},
		{"aiortc.sdp", nil},
		{"chromium.sdp", nil},
		{"firefox.sdp", nil},
		{"obs-whip.sdp", nil},
		{"chromium-simulcast.sdp", nil},
	}
	for _, c := range cases {
		om, err := InspectOffer(fixture(t, c.file))
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if !maps.Equal(om.payloadMIDs, c.want) {
			t.Errorf("%s: payload types %v, want %v", c.file, om.payloadMIDs, c.want)
		}
	}

	// The same payload type in both sections tells nothing.
	shared := strings.ReplaceAll(fixture(t, "gstreamer-default-caps.sdp"), "97", "96")
	om, err := InspectOffer(shared)
	if err != nil {
		t.Fatal(err)
	}
	if len(om.payloadMIDs) != 0 {
		t.Errorf("shared payload type: %v, want none", om.payloadMIDs)
	}
	// A rejected section (here a second video track) leaves the group: the
	// taken sections' payload types stay unique.
	second := fixture(t, "gstreamer-default-caps.sdp")
	vsec := second[strings.Index(second, "m=video"):strings.Index(second, "m=audio")]
	second = strings.Replace(second, "BUNDLE video0 audio1", "BUNDLE video0 audio1 video2", 1) + strings.ReplaceAll(vsec, "video0", "video2")
	om, err = InspectOffer(second)
	if err != nil {
		t.Fatal(err)
	}
	if len(om.Rejected) != 1 || om.Rejected[0].MID != "video2" || !maps.Equal(om.payloadMIDs, map[uint8]string{96: "video0", 97: "audio1"}) {
		t.Errorf("with a rejected second video: rejected %+v, payload types %v", om.Rejected, om.payloadMIDs)
	}
	// A retransmission payload type is never bound: its packet may come
	// first, and the section's stream is the media's.
	rtx := strings.Replace(fixture(t, "gstreamer-default-caps.sdp"), "m=video 9 UDP/TLS/RTP/SAVPF 96", "m=video 9 UDP/TLS/RTP/SAVPF 96 98", 1)
	rtx = strings.Replace(rtx, "a=rtpmap:96 H264/90000", "a=rtpmap:96 H264/90000\r\na=rtpmap:98 rtx/90000\r\na=fmtp:98 apt=96", 1)
	if om, err = InspectOffer(rtx); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(om.payloadMIDs, map[uint8]string{96: "video0", 97: "audio1"}) {
		t.Errorf("with rtx: payload types %v, want the media's only", om.payloadMIDs)
	}
	// One section alone: pion binds its stream itself.
	video := fixture(t, "gstreamer-default-caps.sdp")
	video = strings.Replace(video[:strings.Index(video, "m=audio")], "BUNDLE video0 audio1", "BUNDLE video0", 1)
	if om, err = InspectOffer(video); err != nil || len(om.payloadMIDs) != 0 {
		t.Errorf("single section: %v %v, want none", om.payloadMIDs, err)
	}
}

// TestPTDemuxObserve: the first RTP packet of a section's payload type
// binds its SSRC; RTCP, other payload types and later SSRCs of a bound
// section do not; with every section bound the demultiplexer disarms.
func TestPTDemuxObserve(t *testing.T) {
	var d ptDemux
	pkt := func(pt uint8, ssrc uint32) []byte {
		b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SSRC: ssrc, SequenceNumber: 1}, Payload: []byte{1}}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	d.observe(pkt(96, 1)) // not armed yet
	d.arm(map[uint8]string{96: "v", 98: "v", 97: "a"})
	d.observe([]byte{0x80, 200, 0, 6, 0, 0, 0, 9, 0, 0, 0, 0}) // a Sender Report
	d.observe(pkt(100, 2))                                     // no section's
	d.observe([]byte{0x16, 0xfe, 0xfd})                        // DTLS
	d.observe(pkt(98, 3))
	// The video section is bound: its payload types no longer take the
	// lock (a muted section keeps the demultiplexer armed all session).
	d.mu.Lock()
	done := make(chan struct{})
	go func() { d.observe(pkt(96, 4)); d.observe(pkt(100, 6)); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a packet of a bound or unknown payload type waited for the lock")
	}
	d.mu.Unlock()
	if !d.armed.Load() {
		t.Fatal("disarmed with audio unbound")
	}
	d.observe(pkt(97, 5))
	if d.armed.Load() {
		t.Error("still armed with every section bound")
	}
	if !d.bound(3) || !d.bound(5) || d.bound(4) {
		t.Errorf("bound SSRCs %v, want 3 and 5", d.ssrcs)
	}
	close(d.found)
	var got []streamBinding
	for b := range d.found {
		got = append(got, b)
	}
	want := []streamBinding{{mid: "v", ssrc: 3, pt: 98}, {mid: "a", ssrc: 5, pt: 97}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("bindings %+v, want %+v", got, want)
	}
}

// TestSessionBindsUndeclaredStreams: a publisher whose bundled audio+video
// offer declares no SSRC and no extensions (what GStreamer webrtcbin sends
// from default caps; here a pion publisher with those lines cut) gets both
// its tracks to the handler, with their codecs, and the read loop starts
// with the first packet sent. pion alone drops both streams.
func TestSessionBindsUndeclaredStreams(t *testing.T) {
	pub, locals := newUndeclaredPublisher(t)
	tp := listenLoopback(t, ListenConfig{})
	sess, err := tp.NewSession(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var readers sync.WaitGroup
	defer readers.Wait() // after sess.Close has ended the reads
	defer sess.Close()
	type first struct {
		kind, codec string
		seq         uint16
	}
	got := make(chan first, 64)
	sess.OnTrack(func(track *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		kind, codec := track.Kind().String(), track.Codec().MimeType
		readers.Go(func() {
			sess.ReadRTP(track, NewRTPStats(track.Codec().ClockRate), func(time.Time, int) {}, func(b []byte, _ time.Time) {
				var p rtp.Packet
				if p.Unmarshal(b) == nil {
					select {
					case got <- first{kind, codec, p.SequenceNumber}:
					default:
					}
				}
			}, nil)
		})
	})

	om, answer := connectPublisher(t, pub, sess, func(sdp string) string {
		return regexp.MustCompile(`(?m)^a=(ssrc|ssrc-group|msid|extmap):.*\r\n`).ReplaceAllString(sdp, "")
	})
	if len(om.payloadMIDs) == 0 {
		t.Fatalf("no payload-type table for an offer without SSRCs:\n%s", om.sdp)
	}
	if strings.Contains(answer, "a=extmap:") {
		t.Fatalf("the answer has extensions the offer did not:\n%s", answer)
	}

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for seq := uint16(1); ; seq++ {
			for _, l := range locals {
				_ = l.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960}, Payload: []byte{0x09, 0xf0}})
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { close(stop); <-done }()

	seen := map[string]first{}
	deadline := time.After(10 * time.Second)
	for len(seen) < 2 {
		select {
		case f := <-got:
			if _, ok := seen[f.kind]; !ok {
				seen[f.kind] = f
			}
		case <-deadline:
			t.Fatalf("tracks handed over: %+v, want audio and video", seen)
		}
	}
	if v := seen["video"]; !strings.EqualFold(v.codec, webrtc.MimeTypeH264) || v.seq != 1 {
		t.Errorf("video %+v, want H264 from sequence number 1", v)
	}
	if a := seen["audio"]; !strings.EqualFold(a.codec, webrtc.MimeTypeOpus) || a.seq != 1 {
		t.Errorf("audio %+v, want opus from sequence number 1", a)
	}
}

// newUndeclaredPublisher is a pion publisher of H.264 and Opus that
// registers no header extensions, and so sends none.
func newUndeclaredPublisher(t *testing.T) (*webrtc.PeerConnection, []*webrtc.TrackLocalStaticRTP) {
	t.Helper()
	me := &webrtc.MediaEngine{}
	codecs := []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "packetization-mode=1;profile-level-id=42e01f"}, PayloadType: 96},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 97},
	}
	for i, c := range codecs {
		kind := webrtc.RTPCodecTypeVideo
		if i == 1 {
			kind = webrtc.RTPCodecTypeAudio
		}
		if err := me.RegisterCodec(c, kind); err != nil {
			t.Fatal(err)
		}
	}
	se := loopbackSettings()
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	var locals []*webrtc.TrackLocalStaticRTP
	for _, c := range codecs {
		track, err := webrtc.NewTrackLocalStaticRTP(c.RTPCodecCapability, strings.TrimPrefix(c.MimeType, "video/"), "undeclared")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
		locals = append(locals, track)
	}
	return pc, locals
}

// TestDemuxLoggerQuiet: pion's "unhandled" error is left out for a stream
// the session bound, and kept for any other, as are other errors.
func TestDemuxLoggerQuiet(t *testing.T) {
	var d ptDemux
	d.arm(map[uint8]string{96: "v"})
	d.observe([]byte{0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7})
	var buf strings.Builder
	lf := logging.NewDefaultLoggerFactory()
	lf.Writer = &buf
	l := demuxLoggerFactory{lf, &d}.NewLogger("pc")
	l.Errorf(unhandledSSRCFormat, webrtc.SSRC(7), "mid RTP Extensions required for Simulcast")
	if buf.Len() != 0 {
		t.Errorf("logged for a bound stream: %q", buf.String())
	}
	l.Errorf(unhandledSSRCFormat, webrtc.SSRC(8), "mid RTP Extensions required for Simulcast")
	l.Errorf("something else %d", 7)
	if out := buf.String(); !strings.Contains(out, "ssrc(8)") || !strings.Contains(out, "something else 7") {
		t.Errorf("log %q, want the unbound stream's error and the other one", out)
	}
}
