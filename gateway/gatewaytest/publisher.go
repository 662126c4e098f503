// Package gatewaytest provides reusable helpers for testing the gateway
// against real peers, in the spirit of net/http/httptest: a real pion/webrtc
// publisher on loopback UDP (fed from the test media that package
// transmux/format/mediafile reads), a lossy UDP relay, a real nginx-rtmp
// ingest and ffprobe/ffmpeg wrappers to check what was recorded.
//
// It is a normal package, but is meant to be imported from tests only.
package gatewaytest

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v2"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v3"

	"github.com/castbridge/castbridge/transmux/format/mediafile"
)

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// VideoFile is an Annex B H.264 file (see mediafile.ReadH264File); "" = no video.
	VideoFile string
	// AudioFile is an Ogg Opus file (see mediafile.ReadOpusFile); "" = no audio.
	AudioFile string
	// FPS is the video frame rate; 0 means 30.
	FPS int
	// SeparateParameterSets sends SPS and PPS as single-NAL-unit packets of
	// their own, like OBS; otherwise they go together in a STAP-A, like
	// browsers.
	SeparateParameterSets bool
	// MTU is the largest RTP packet (header + payload) in bytes; 0 means
	// 1200.
	MTU int
	// Loop restarts the material from its beginning when it ends; without
	// it, sending ends with the material.
	Loop bool
	// VideoProfile is the H.264 profile-level-id offered; "" means 42e01f.
	VideoProfile string
	// VideoCodec, if set, makes the video VP9 ("vp9", VideoFile an IVF
	// file), AV1 ("av1", IVF) or H.265 ("hevc", Annex B): offered as that
	// codec alone and packetized with pion's payloaders (mediafile's for
	// H.265). "" is H.264.
	VideoCodec string
	// OfferCodec, if set, replaces H.264 in the offer by another video codec
	// name (e.g. "VP8"), for negative tests. The payloads sent stay H.264.
	OfferCodec string
	// NearWrap starts the RTP timestamps about one second before they wrap
	// at 2^32 instead of at random values.
	NearWrap bool
	// RestartTimestamps makes a looping publisher start its RTP timestamps
	// again at their first value each time the material loops, while the
	// sequence numbers go on: what aiortc's looping MediaPlayer does.
	RestartTimestamps bool
	// NoSenderReports sends no RTCP Sender Reports at all, like OBS at the
	// start of a WHIP session, so the gateway has to fall back to arrival
	// times. NACK and TWCC still work.
	NoSenderReports bool
	// PacingRate, in bit/s, paces video the way libwebrtc's pacer does
	// (browsers pace at 2.5 times the target bit rate): packets leave at
	// once while the send debt is under pacingBurst at this rate, then at
	// the rate; so a P-frame goes out in one burst and a large keyframe is
	// spread out. 0 writes every frame's packets back to back.
	PacingRate int
	// Networks restricts the publisher's ICE to these network types; nil
	// means UDP over IPv4 on 127.0.0.1. With TCP4 the publisher gathers no
	// candidate of its own and connects actively to the gateway's passive
	// ICE-TCP candidates, like a browser behind a UDP-blocking firewall.
	// With UDP6 it gathers one host candidate on [::1] (from a socket of
	// its own: pion leaves ::1 out of the interface addresses it gathers).
	Networks []webrtc.NetworkType
	// Layers, if set, make the video simulcast (a=simulcast with these
	// rids, RID header extensions): one encoding per layer, each sending
	// its own file (VideoFile is then ignored) with its own SSRC, sequence
	// numbers and RTP timestamp base, like a browser's sendEncodings.
	// SetLayerSending stops and resumes a layer.
	Layers []Layer
}

// Layer is one simulcast layer of a Publisher.
type Layer struct {
	RID  string
	File string // Annex B H.264, as VideoFile
}

// pubLayer is a simulcast layer being sent.
type pubLayer struct {
	Layer
	frames     []mediafile.Frame
	track      *webrtc.TrackLocalStaticRTP
	pliPending atomic.Bool
	paused     atomic.Bool
	sender     *webrtc.RTPSender
	sent       []SentFrame // guarded by Publisher.mu
}

// pacingBurst is how far ahead of its rate a paced publisher may send:
// libwebrtc's PacingController allows a debt of 40 ms at the pacing rate
// (kDefaultBurstInterval).
const pacingBurst = 40 * time.Millisecond

// SentFrame records one video frame the Publisher sent.
type SentFrame struct {
	Seq          int           // order sent, from 0
	Source       int           // frame index in the file
	RTPTimestamp uint32        // RTP timestamp (90 kHz)
	PTS          time.Duration // relative to the first sent frame
	IDR          bool          // an IDR access unit
	Digest       uint64        // mediafile.FrameDigest of the frame
	// FirstPacketAt is the wall clock just before its first RTP packet was
	// written: nothing downstream can have the frame earlier, so it orders
	// a frame against its receipt. LastPacketAt is taken after its last
	// packet was written (the start of its latency).
	FirstPacketAt time.Time
	LastPacketAt  time.Time
}

// SentAudio records one Opus packet the Publisher sent.
type SentAudio struct {
	Seq          int           // order sent, from 0
	RTPTimestamp uint32        // RTP timestamp (48 kHz)
	PTS          time.Duration // relative to the first sent packet
	At           time.Time     // wall clock when it was written
}

// Publisher is a real pion/webrtc publisher that sends test material over
// real UDP on the loopback interface, like a browser or OBS publishing over
// WHIP: H.264 (packetization-mode 1) and Opus, RTCP feedback read and
// counted, NACKs answered with retransmissions, PLI/FIR answered by jumping
// to the next IDR of the material.
type Publisher struct {
	cfg    PublisherConfig
	frames []mediafile.Frame // H.264 access units; for VideoCodec, the frames' units
	audio  []mediafile.OpusPacket
	vp9pay *codecs.VP9Payloader
	av1pay *codecs.AV1Payloader

	pc          *webrtc.PeerConnection
	udpMux      ice.UDPMux // the [::1] socket of a UDP6 publisher, or nil
	videoTrack  *webrtc.TrackLocalStaticRTP
	layers      []*pubLayer
	audioTrack  *webrtc.TrackLocalStaticRTP
	connected   chan struct{}
	gone        chan struct{} // failed or closed
	connOnce    sync.Once
	goneOnce    sync.Once
	closeCtx    context.Context
	closeCancel context.CancelFunc
	rtcpWG      sync.WaitGroup
	layerWG     sync.WaitGroup // the simulcast layers' RTCP readers
	sendWG      sync.WaitGroup
	started     atomic.Bool
	pliPending  atomic.Bool
	videoPaused atomic.Bool // SetVideoSending(false)

	mu        sync.Mutex
	sent      []SentFrame
	sentAudio []SentAudio
	plis      int
	nacks     int
	rembs     []uint64
	reports   []ReceivedReport
	twcc      int
}

// ReceivedReport is a reception report block the gateway sent about one of
// the publisher's tracks.
type ReceivedReport struct {
	Kind string // "video" or "audio": the track it was read on
	At   time.Time
	rtcp.ReceptionReport
}

// NewPublisher reads the material and creates the PeerConnection with only
// the configured codecs, pion's default interceptors (NACK responder, RTCP
// sender and receiver reports, TWCC feedback) plus transport-wide sequence
// numbers on every packet as browsers send them, and ICE restricted to UDP
// over IPv4 on 127.0.0.1 (or to cfg.Networks).
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.FPS <= 0 {
		cfg.FPS = 30
	}
	if cfg.MTU <= 0 {
		cfg.MTU = 1200
	}
	if cfg.MTU < 100 {
		return nil, fmt.Errorf("gatewaytest: MTU %d too small", cfg.MTU)
	}
	if cfg.VideoProfile == "" {
		cfg.VideoProfile = "42e01f"
	}
	if len(cfg.Layers) > 0 {
		cfg.VideoFile = cfg.Layers[0].File
	}
	if cfg.VideoFile == "" && cfg.AudioFile == "" {
		return nil, errors.New("gatewaytest: publisher needs a video or an audio file")
	}
	p := &Publisher{cfg: cfg, connected: make(chan struct{}), gone: make(chan struct{})}
	var err error
	switch {
	case cfg.VideoFile != "" && cfg.VideoCodec != "":
		if p.frames, err = readCodecFrames(cfg.VideoCodec, cfg.VideoFile); err != nil {
			return nil, err
		}
		p.vp9pay = &codecs.VP9Payloader{}
		p.av1pay = &codecs.AV1Payloader{}
	case cfg.VideoFile != "":
		if p.frames, err = mediafile.ReadH264File(cfg.VideoFile); err != nil {
			return nil, err
		}
	}
	for _, l := range cfg.Layers {
		pl := &pubLayer{Layer: l}
		if pl.frames, err = mediafile.ReadH264File(l.File); err != nil {
			return nil, err
		}
		p.layers = append(p.layers, pl)
	}
	if cfg.AudioFile != "" {
		if p.audio, err = mediafile.ReadOpusFile(cfg.AudioFile); err != nil {
			return nil, err
		}
	}

	me := &webrtc.MediaEngine{}
	var videoCap, audioCap webrtc.RTPCodecCapability
	if cfg.VideoFile != "" {
		videoCap = webrtc.RTPCodecCapability{
			MimeType:  webrtc.MimeTypeH264,
			ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" +
				cfg.VideoProfile,
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}},
		}
		pt := webrtc.PayloadType(102)
		if cfg.VideoCodec != "" {
			videoCap, pt = codecCapability(cfg.VideoCodec, videoCap.RTCPFeedback)
		}
		if cfg.OfferCodec != "" && !strings.EqualFold(cfg.OfferCodec, "H264") {
			videoCap = webrtc.RTPCodecCapability{
				MimeType:     "video/" + cfg.OfferCodec,
				ClockRate:    90000,
				RTCPFeedback: videoCap.RTCPFeedback,
			}
			pt = 96
		}
		if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: videoCap, PayloadType: pt},
			webrtc.RTPCodecTypeVideo); err != nil {
			return nil, err
		}
		if len(cfg.Layers) > 0 {
			for _, uri := range []string{sdp.SDESMidURI, sdp.SDESRTPStreamIDURI} {
				if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: uri}, webrtc.RTPCodecTypeVideo); err != nil {
					return nil, err
				}
			}
		}
	}
	if cfg.AudioFile != "" {
		audioCap = webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1",
		}
		if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: audioCap, PayloadType: 111},
			webrtc.RTPCodecTypeAudio); err != nil {
			return nil, err
		}
	}
	ir := &interceptor.Registry{}
	if cfg.NoSenderReports {
		// webrtc.RegisterDefaultInterceptors without the SR generator
		if err := webrtc.ConfigureNack(me, ir); err != nil {
			return nil, err
		}
		rr, err := report.NewReceiverInterceptor()
		if err != nil {
			return nil, err
		}
		ir.Add(rr)
		if err := webrtc.ConfigureTWCCSender(me, ir); err != nil {
			return nil, err
		}
	} else if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, err
	}
	// Browsers number every packet for transport-wide congestion control;
	// pion's defaults only negotiate the extension.
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(me, ir); err != nil {
		return nil, err
	}
	se := LoopbackSettingEngine()
	if cfg.Networks != nil {
		se.SetNetworkTypes(cfg.Networks)
		if slices.Contains(cfg.Networks, webrtc.NetworkTypeUDP6) {
			c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
			if err != nil {
				return nil, fmt.Errorf("gatewaytest: udp6 on [::1]: %w", err)
			}
			p.udpMux = webrtc.NewICEUDPMux(nil, c)
			se.SetICEUDPMux(p.udpMux)
		}
	}
	p.pc, err = webrtc.NewAPI(
		webrtc.WithMediaEngine(me),
		webrtc.WithInterceptorRegistry(ir),
		webrtc.WithSettingEngine(se),
	).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		if p.udpMux != nil {
			_ = p.udpMux.Close()
		}
		return nil, err
	}
	p.closeCtx, p.closeCancel = context.WithCancel(context.Background())
	p.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			p.connOnce.Do(func() { close(p.connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			p.goneOnce.Do(func() { close(p.gone) })
		}
	})

	addTrack := func(c webrtc.RTPCodecCapability, id string) (*webrtc.TrackLocalStaticRTP, error) {
		tr, err := webrtc.NewTrackLocalStaticRTP(c, id, "castbridge-test")
		if err != nil {
			return nil, err
		}
		t, err := p.pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return nil, err
		}
		p.rtcpWG.Add(1)
		go p.readRTCP(t.Sender())
		return tr, nil
	}
	switch {
	case len(p.layers) > 0:
		if err := p.addLayers(videoCap); err != nil {
			_ = p.Close()
			return nil, err
		}
	case cfg.VideoFile != "":
		if p.videoTrack, err = addTrack(videoCap, "video"); err != nil {
			_ = p.Close()
			return nil, err
		}
	}
	if cfg.AudioFile != "" {
		if p.audioTrack, err = addTrack(audioCap, "audio"); err != nil {
			_ = p.Close()
			return nil, err
		}
	}
	return p, nil
}

// LoopbackSettingEngine returns a pion SettingEngine that keeps ICE on
// UDP over IPv4 on 127.0.0.1 (loopback candidates included, mDNS off). It
// is what the Publisher uses; tests can use it for their own peers.
func LoopbackSettingEngine() webrtc.SettingEngine {
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// Prefer the candidates the answer names (possibly a LossyRelay) over
	// peer-reflexive ones learnt from the remote's own checks, so that a
	// relay stays on the path.
	se.SetPrflxAcceptanceMinWait(2 * time.Second)
	return se
}

// PeerConnection returns the underlying PeerConnection.
func (p *Publisher) PeerConnection() *webrtc.PeerConnection { return p.pc }

// Frames returns the video material as read from VideoFile.
func (p *Publisher) Frames() []mediafile.Frame { return p.frames }

// Offer creates the SDP offer and returns it complete, after ICE gathering
// (no trickle).
func (p *Publisher) Offer(ctx context.Context) (string, error) {
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		return "", err
	}
	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return p.pc.LocalDescription().SDP, nil
}

// SetAnswer applies the remote SDP answer.
func (p *Publisher) SetAnswer(sdp string) error {
	return p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp})
}

// Connected returns a channel closed once the PeerConnection is connected
// (ICE and DTLS).
func (p *Publisher) Connected() <-chan struct{} { return p.connected }

// Start sends the material in real time once the PeerConnection is
// connected: a video frame every 1/FPS s with RTP timestamp
// base+n*90000/FPS (n = frames sent so far, whatever part of the file they
// come from), an Opus packet every 20 ms (its own duration) at 48 kHz. The
// bases are random (or near the wrap, see NearWrap). Sending ends with ctx,
// with Close, when the connection fails, or when the material ends (without
// Loop). Start must be called at most once.
func (p *Publisher) Start(ctx context.Context) {
	if !p.started.CompareAndSwap(false, true) {
		panic("gatewaytest: Publisher.Start called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.closeCtx, cancel)
	n := len(p.layers)
	if p.videoTrack != nil {
		n++
	}
	if p.audioTrack != nil {
		n++
	}
	var left atomic.Int32
	left.Store(int32(n))
	done := func() {
		if left.Add(-1) == 0 {
			stop()
			cancel()
		}
		p.sendWG.Done()
	}
	p.sendWG.Add(n)
	go func() {
		select {
		case <-p.connected:
		case <-p.gone:
			cancel()
		case <-ctx.Done():
		}
		t0 := time.Now()
		if p.videoTrack != nil {
			go func() { defer done(); p.sendVideo(ctx, t0) }()
		}
		for _, l := range p.layers {
			go func() { defer done(); p.sendLayer(ctx, t0, l) }()
		}
		if p.audioTrack != nil {
			go func() { defer done(); p.sendAudio(ctx, t0) }()
		}
	}()
}

// Wait blocks until sending has finished (see Start). It returns at once if
// Start was not called.
func (p *Publisher) Wait() { p.sendWG.Wait() }

// Sent returns the video frames sent so far, in order.
func (p *Publisher) Sent() []SentFrame {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]SentFrame(nil), p.sent...)
}

// SentAudio returns the Opus packets sent so far, in order.
func (p *Publisher) SentAudio() []SentAudio {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]SentAudio(nil), p.sentAudio...)
}

// ReceptionReports returns the receiver report blocks the publisher got,
// in order of arrival.
func (p *Publisher) ReceptionReports() []ReceivedReport {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.reports)
}

// TWCCFeedbacks returns how many transport-wide congestion control feedback
// packets the publisher received.
func (p *Publisher) TWCCFeedbacks() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.twcc
}

// PLIs returns how many PLI and FIR requests the publisher received.
func (p *Publisher) PLIs() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.plis
}

// NACKs returns how many RTCP NACK packets the publisher received (pion's
// NACK responder retransmits the packets they name).
func (p *Publisher) NACKs() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nacks
}

// REMBs returns the bitrates (bit/s) of the REMB packets received, in
// order.
func (p *Publisher) REMBs() []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]uint64(nil), p.rembs...)
}

// Close stops sending, closes the PeerConnection and waits for the
// publisher's goroutines to end.
func (p *Publisher) Close() error {
	p.closeCancel()
	// pion's RTPSender.ReadSimulcast reads the encodings unlocked, which
	// closing the sender writes: the layers' readers end first.
	for _, l := range p.layers {
		if l.sender != nil {
			_ = l.sender.SetReadDeadlineSimulcast(time.Now(), l.RID)
		}
	}
	p.layerWG.Wait()
	err := p.pc.Close()
	p.sendWG.Wait()
	p.rtcpWG.Wait()
	if p.udpMux != nil {
		err = errors.Join(err, p.udpMux.Close())
	}
	return err
}

func (p *Publisher) readRTCP(s *webrtc.RTPSender) {
	defer p.rtcpWG.Done()
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		p.mu.Lock()
		for _, pkt := range pkts {
			switch pkt := pkt.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				p.plis++
				if s.Track() != nil && s.Track().Kind() == webrtc.RTPCodecTypeVideo {
					p.pliPending.Store(true)
				}
			case *rtcp.TransportLayerNack:
				p.nacks++
			case *rtcp.TransportLayerCC:
				p.twcc++
			case *rtcp.ReceiverReport:
				if s.Track() != nil {
					for _, r := range pkt.Reports {
						p.reports = append(p.reports, ReceivedReport{Kind: s.Track().Kind().String(), At: time.Now(), ReceptionReport: r})
					}
				}
			case *rtcp.ReceiverEstimatedMaximumBitrate:
				p.rembs = append(p.rembs, uint64(pkt.Bitrate))
			}
		}
		p.mu.Unlock()
	}
}

func (p *Publisher) timestampBase(clock uint32) uint32 {
	if p.cfg.NearWrap {
		return -clock // one second before the wrap
	}
	return rand.Uint32()
}

// SleepUntil waits until t or until ctx ends, and reports whether ctx is
// still live (load generators pace their own schedules with it too).
func SleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (p *Publisher) sendVideo(ctx context.Context, t0 time.Time) {
	fps := p.cfg.FPS
	base := p.timestampBase(90000)
	seq := uint16(rand.Uint32())
	pos := 0
	loopAt := 0        // frame count at the material's last restart
	var pace time.Time // when the pacer may send the next packet
	for n := 0; ; n++ {
		pts := time.Duration(n) * time.Second / time.Duration(fps)
		if !SleepUntil(ctx, t0.Add(pts)) {
			return
		}
		if now := time.Now(); pace.Before(now) {
			pace = now
		}
		if p.videoPaused.Load() {
			continue // a stalled encoder: its clock goes on, nothing is sent
		}
		if pos >= len(p.frames) {
			if !p.cfg.Loop {
				return
			}
			pos = 0
			if p.cfg.RestartTimestamps {
				loopAt = n
			}
		}
		if p.pliPending.Swap(false) && !p.frames[pos].IDR {
			pos = p.nextIDR(pos)
		}
		f := p.frames[pos]
		ts := base + uint32(int64(n-loopAt)*90000/int64(fps))
		payloads := p.packetize(f)
		var firstAt time.Time
		for i, pl := range payloads {
			pkt := &rtp.Packet{
				Header: rtp.Header{
					Version:        2,
					Marker:         i == len(payloads)-1,
					SequenceNumber: seq,
					Timestamp:      ts,
				},
				Payload: pl,
			}
			seq++
			if p.cfg.PacingRate > 0 {
				if time.Until(pace) >= pacingBurst && !SleepUntil(ctx, pace.Add(-pacingBurst)) {
					return
				}
				pace = pace.Add(time.Duration(len(pl)+12) * 8 * time.Second / time.Duration(p.cfg.PacingRate))
			}
			if i == 0 {
				firstAt = time.Now()
			}
			if err := p.videoTrack.WriteRTP(pkt); err != nil && ctx.Err() != nil {
				return
			}
		}
		now := time.Now()
		p.mu.Lock()
		p.sent = append(p.sent, SentFrame{
			Seq: n, Source: pos, RTPTimestamp: ts, PTS: pts, IDR: f.IDR,
			Digest: mediafile.FrameDigest(p.cfg.VideoCodec, f.NALUs), FirstPacketAt: firstAt, LastPacketAt: now,
		})
		p.mu.Unlock()
		pos++
	}
}

// addLayers adds the simulcast video: one transceiver, an encoding per
// layer, and a reader of each encoding's RTCP.
func (p *Publisher) addLayers(c webrtc.RTPCodecCapability) error {
	var sender *webrtc.RTPSender
	for i, l := range p.layers {
		tr, err := webrtc.NewTrackLocalStaticRTP(c, "video", "castbridge-test", webrtc.WithRTPStreamID(l.RID))
		if err != nil {
			return err
		}
		l.track = tr
		defer func() { l.sender = sender }()
		if i == 0 {
			t, err := p.pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
			if err != nil {
				return err
			}
			sender = t.Sender()
			continue
		}
		if err := sender.AddEncoding(tr); err != nil {
			return fmt.Errorf("gatewaytest: simulcast layer %s: %w", l.RID, err)
		}
	}
	for _, l := range p.layers {
		p.layerWG.Add(1)
		go func() {
			defer p.layerWG.Done()
			buf := make([]byte, 1500)
			for {
				n, _, err := sender.ReadSimulcast(buf, l.RID)
				if err != nil {
					return // the sender or the connection closed
				}
				pkts, err := rtcp.Unmarshal(buf[:n])
				if err != nil {
					continue
				}
				p.mu.Lock()
				for _, pkt := range pkts {
					switch pkt.(type) {
					case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
						p.plis++
						l.pliPending.Store(true)
					case *rtcp.TransportLayerNack:
						p.nacks++
					}
				}
				p.mu.Unlock()
			}
		}()
	}
	return nil
}

// SetVideoSending stops (false) or resumes (true) sending the video (not
// simulcast layers, see SetLayerSending) while the audio goes on: a stalled
// encoder or camera. Its frame times go on while it is stopped; it resumes
// with the frame it stopped at (a P-frame, mid-GOP) unless a PLI came.
func (p *Publisher) SetVideoSending(on bool) { p.videoPaused.Store(!on) }

// SetLayerSending stops (false) or resumes (true) sending the simulcast
// layer rid; its frame times go on while it is stopped, as an encoder's
// would.
func (p *Publisher) SetLayerSending(rid string, on bool) {
	for _, l := range p.layers {
		if l.RID == rid {
			l.paused.Store(!on)
		}
	}
}

// LayerSent returns the frames sent so far on the simulcast layer rid.
func (p *Publisher) LayerSent(rid string) []SentFrame {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.layers {
		if l.RID == rid {
			return slices.Clone(l.sent)
		}
	}
	return nil
}

// sendLayer sends a simulcast layer's file on its encoding, looping, a
// frame every 1/FPS s; a PLI to the layer jumps to its next IDR.
func (p *Publisher) sendLayer(ctx context.Context, t0 time.Time, l *pubLayer) {
	fps := p.cfg.FPS
	base := p.timestampBase(90000)
	seq := uint16(rand.Uint32())
	pos := 0
	// pion v3 writes no mid or rid header extensions: the gateway tells
	// the layers apart by them, as it does a browser's, so they are set
	// here with the negotiated ids.
	var midID, ridID uint8
	for _, e := range l.sender.GetParameters().HeaderExtensions {
		switch e.URI {
		case sdp.SDESMidURI:
			midID = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			ridID = uint8(e.ID)
		}
	}
	mid := ""
	for _, t := range p.pc.GetTransceivers() {
		if t.Sender() == l.sender {
			mid = t.Mid()
		}
	}
	for n := 0; ; n++ {
		pts := time.Duration(n) * time.Second / time.Duration(fps)
		if !SleepUntil(ctx, t0.Add(pts)) {
			return
		}
		if l.paused.Load() {
			continue
		}
		if pos >= len(l.frames) {
			if !p.cfg.Loop {
				return
			}
			pos = 0
		}
		if l.pliPending.Swap(false) && !l.frames[pos].IDR {
			for i := range len(l.frames) {
				if j := (pos + i) % len(l.frames); l.frames[j].IDR {
					pos = j
					break
				}
			}
		}
		f := l.frames[pos]
		ts := base + uint32(int64(n)*90000/int64(fps))
		payloads := packetizeH264(f.NALUs, p.cfg.MTU-12, p.cfg.SeparateParameterSets)
		firstAt := time.Now()
		for i, pl := range payloads {
			pkt := &rtp.Packet{
				Header:  rtp.Header{Version: 2, Marker: i == len(payloads)-1, SequenceNumber: seq, Timestamp: ts},
				Payload: pl,
			}
			if midID != 0 && ridID != 0 {
				if err := pkt.Header.SetExtension(midID, []byte(mid)); err != nil {
					return
				}
				if err := pkt.Header.SetExtension(ridID, []byte(l.RID)); err != nil {
					return
				}
			}
			seq++
			if err := l.track.WriteRTP(pkt); err != nil && ctx.Err() != nil {
				return
			}
		}
		now := time.Now()
		p.mu.Lock()
		l.sent = append(l.sent, SentFrame{
			Seq: n, Source: pos, RTPTimestamp: ts, PTS: pts, IDR: f.IDR,
			Digest: mediafile.SliceDigest(f.NALUs), FirstPacketAt: firstAt, LastPacketAt: now,
		})
		p.mu.Unlock()
		pos++
	}
}

// nextIDR returns the index of the first IDR at or after pos, wrapping
// around to the start of the material.
func (p *Publisher) nextIDR(pos int) int {
	for i := 0; i < len(p.frames); i++ {
		j := (pos + i) % len(p.frames)
		if p.frames[j].IDR {
			return j
		}
	}
	return pos
}

func (p *Publisher) sendAudio(ctx context.Context, t0 time.Time) {
	base := p.timestampBase(48000)
	seq := uint16(rand.Uint32())
	var elapsed time.Duration
	var loopAt time.Duration // elapsed at the material's last restart
	pos := 0
	for n := 0; ; n++ {
		if !SleepUntil(ctx, t0.Add(elapsed)) {
			return
		}
		if pos >= len(p.audio) {
			if !p.cfg.Loop {
				return
			}
			pos = 0
			if p.cfg.RestartTimestamps {
				loopAt = elapsed
			}
		}
		a := p.audio[pos]
		ts := base + uint32(int64(elapsed-loopAt)*48000/int64(time.Second))
		pkt := &rtp.Packet{
			Header:  rtp.Header{Version: 2, Marker: n == 0, SequenceNumber: seq, Timestamp: ts},
			Payload: a.Data,
		}
		seq++
		if err := p.audioTrack.WriteRTP(pkt); err != nil && ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		p.sentAudio = append(p.sentAudio, SentAudio{Seq: n, RTPTimestamp: ts, PTS: elapsed, At: time.Now()})
		p.mu.Unlock()
		elapsed += a.Duration
		pos++
	}
}

// packetizeH264 turns the NAL units of one access unit into RTP payloads
// (RFC 6184, packetization-mode 1): single NAL unit packets, FU-A for NAL
// units larger than maxPayload, and SPS+PPS together in one STAP-A unless
// separate is set. AUDs and filler data are not sent, as browsers do.
// ReadVideoFrames reads the video material of codec ("" or "h264", "vp9",
// "av1", "hevc") as a publisher of PublisherConfig.VideoCodec sends it.
func ReadVideoFrames(codec, path string) ([]mediafile.Frame, error) {
	if codec == "" || codec == "h264" {
		return mediafile.ReadH264File(path)
	}
	return readCodecFrames(codec, path)
}

// readCodecFrames reads a VP9, AV1 or H.265 file into frames whose NALUs
// are the units RTP carries: the VP9 frame, the AV1 OBUs (temporal
// delimiters left out, sizes dropped), the H.265 NAL units.
func readCodecFrames(codec, path string) ([]mediafile.Frame, error) {
	var out []mediafile.Frame
	switch codec {
	case "vp9", "av1":
		frames, err := mediafile.ReadIVFFile(path)
		if err != nil {
			return nil, err
		}
		for i, f := range frames {
			if codec == "vp9" {
				out = append(out, mediafile.Frame{NALUs: [][]byte{f}, IDR: len(f) > 0 && f[0]&0xc4 == 0x80 && f[0]&0x08 == 0})
				continue
			}
			obus, err := mediafile.SplitAV1OBUs(f)
			if err != nil {
				return nil, fmt.Errorf("%s: frame %d: %w", path, i, err)
			}
			fr := mediafile.Frame{}
			for _, o := range obus {
				switch o[0] >> 3 & 0x0f {
				case 2: // temporal delimiter
					continue
				case 1: // sequence header: sent with every key frame
					fr.IDR = true
				}
				fr.NALUs = append(fr.NALUs, o)
			}
			out = append(out, fr)
		}
	case "hevc":
		frames, err := mediafile.ReadH265File(path)
		if err != nil {
			return nil, err
		}
		for _, f := range frames {
			out = append(out, mediafile.Frame{NALUs: f.NALUs, IDR: f.IRAP})
		}
	default:
		return nil, fmt.Errorf("gatewaytest: video codec %q", codec)
	}
	return out, nil
}

func codecCapability(codec string, fb []webrtc.RTCPFeedback) (webrtc.RTPCodecCapability, webrtc.PayloadType) {
	switch codec {
	case "vp9":
		return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0", RTCPFeedback: fb}, 98
	case "av1":
		return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000, RTCPFeedback: fb}, 45
	}
	return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH265, ClockRate: 90000, RTCPFeedback: fb}, 49
}

// packetize is a frame's RTP payloads in the publisher's codec.
func (p *Publisher) packetize(f mediafile.Frame) [][]byte {
	max := p.cfg.MTU - 12
	switch p.cfg.VideoCodec {
	case "vp9":
		return p.vp9pay.Payload(uint16(max), f.NALUs[0])
	case "av1":
		var out [][]byte
		for _, o := range f.NALUs {
			out = append(out, p.av1pay.Payload(uint16(max), o)...)
		}
		return out
	case "hevc":
		return mediafile.PayloadH265(max, f.NALUs)
	}
	return packetizeH264(f.NALUs, max, p.cfg.SeparateParameterSets)
}

func packetizeH264(nalus [][]byte, maxPayload int, separate bool) [][]byte {
	var out [][]byte
	var stap [][]byte
	flushStap := func() {
		switch len(stap) {
		case 0:
		case 1:
			out = append(out, stap[0])
		default:
			var nri byte
			size := 1
			for _, n := range stap {
				if n[0]&0x60 > nri {
					nri = n[0] & 0x60
				}
				size += 2 + len(n)
			}
			b := make([]byte, 0, size)
			b = append(b, nri|24)
			for _, n := range stap {
				b = append(b, byte(len(n)>>8), byte(len(n)))
				b = append(b, n...)
			}
			out = append(out, b)
		}
		stap = nil
	}
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		typ := n[0] & 0x1f
		if typ == 9 || typ == 12 {
			continue
		}
		if !separate && (typ == 7 || typ == 8) {
			size := 1
			for _, s := range stap {
				size += 2 + len(s)
			}
			if size+2+len(n) > maxPayload {
				flushStap()
			}
			if 1+2+len(n) <= maxPayload {
				stap = append(stap, n)
				continue
			}
		}
		flushStap()
		if len(n) <= maxPayload {
			out = append(out, n)
			continue
		}
		// FU-A
		indicator := n[0]&0xe0 | 28
		data := n[1:]
		for first := true; len(data) > 0; first = false {
			l := maxPayload - 2
			if l > len(data) {
				l = len(data)
			}
			hdr := typ
			if first {
				hdr |= 0x80
			}
			if l == len(data) {
				hdr |= 0x40
			}
			b := make([]byte, 0, 2+l)
			b = append(b, indicator, hdr)
			b = append(b, data[:l]...)
			out = append(out, b)
			data = data[l:]
		}
	}
	flushStap()
	return out
}
