package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v3"

	"github.com/castbridge/castbridge/transmux/format/flv"
)

// StreamState is a publisher session's state as the API reports it.
type StreamState string

// Stream states.
const (
	StateConnecting StreamState = "connecting" // offer answered, ICE/DTLS not up or no media yet
	StateConnected  StreamState = "connected"  // media arriving
	StateLive       StreamState = "live"       // a broadcast runs
	StateClosed     StreamState = "closed"
)

// Stream is one publisher's WebRTC session (a "preview" in RtcUser terms).
type Stream struct {
	id        string
	name      string
	createdAt time.Time
	m         *Manager
	log       *slog.Logger
	pc        *webrtc.PeerConnection
	rtcpSSRC  uint32 // sender SSRC of the gateway's RTCP (reports, NACK, PLI)
	answer    string
	rtcp      *rtcpCounters

	ctx    context.Context // ends when the stream closes
	cancel context.CancelFunc
	wg     sync.WaitGroup // goroutines reading from pion
	once   sync.Once
	closed chan struct{}

	mediaSeen  atomic.Bool
	mediaReady chan struct{} // closed on the first media packet
	lastMedia  atomic.Int64  // unix nanos of the last RTP packet
	audioBytes atomic.Uint64
	audioRate  rateMeter
	events     eventBus
	bitrateCap atomic.Int64 // bit/s the publisher is capped at with REMB; 0 = none
	iceUp      atomic.Bool
	video      *videoPipeline // nil for audio-only offers; set before tracks start
	clock      *avClock       // the A/V timeline both tracks are placed on
	audio      *audioPipeline // the publisher's audio (or silence) for every target

	mu         sync.Mutex
	audioInfo  *AudioInfo
	audioMuted bool
	videoMuted bool
	broadcast  *Broadcast
	closing    bool
	closeCause string
	userMeta   map[string]any // the client's last onMetaData values
}

func newStream(ctx context.Context, m *Manager, id, name, offer string, media offerMedia) (*Stream, error) {
	counters := &rtcpCounters{}
	api, err := newAPI(m.se, counters)
	if err != nil {
		return nil, &Error{Code: CodeInternal, Message: "cannot set up WebRTC", Err: err}
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, &Error{Code: CodeInternal, Message: "cannot create a peer connection", Err: err}
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Stream{
		id:         id,
		name:       name,
		createdAt:  time.Now().UTC(),
		m:          m,
		log:        m.log.With("stream", id),
		pc:         pc,
		rtcpSSRC:   rand.Uint32(),
		rtcp:       counters,
		ctx:        sctx,
		cancel:     cancel,
		closed:     make(chan struct{}),
		mediaReady: make(chan struct{}),
	}
	s.clock = newAVClock()
	s.audio = newAudioPipeline(s)
	if media.video {
		s.video = newVideoPipeline(s)
	}
	pc.OnTrack(s.onTrack)
	pc.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) {
		s.log.Debug("ice state", "state", st.String())
		switch st {
		case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
			s.iceUp.Store(true)
		case webrtc.ICEConnectionStateDisconnected, webrtc.ICEConnectionStateFailed:
			s.iceUp.Store(false)
			// The publisher is gone; end the session from outside pion's callback.
			s.setCloseCause("ice " + st.String())
			m.closeAsync(s)
		default:
			s.iceUp.Store(false)
		}
	})

	fail := func(err error) (*Stream, error) {
		cancel()
		_ = pc.Close()
		return nil, err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(&Error{Code: CodeInvalidSDP, Message: "the SDP offer was refused: " + err.Error(), Err: err})
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(&Error{Code: CodeUnsupportedCodec, Message: "no answer can be made to this offer: " + err.Error(), Err: err})
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return fail(&Error{Code: CodeInternal, Message: "cannot apply the answer", Err: err})
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return fail(&Error{Code: CodeInternal, Message: "ICE gathering did not finish", Err: ctx.Err()})
	}
	s.answer = pc.LocalDescription().SDP
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.control()
	}()
	if s.video == nil {
		// With video, the video frames drive the audio clock (see
		// videoPipeline.onAccessUnit): no 20 ms ticker per stream.
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.audio.clockLoop(s.ctx)
		}()
	}
	s.log.Info("stream created", "video", media.video, "audio", media.audio)
	return s, nil
}

// ID is the stream's API id.
func (s *Stream) ID() string { return s.id }

// Answer is the gateway's SDP answer, with its ICE candidates.
func (s *Stream) Answer() string { return s.answer }

// Done is closed when the stream has closed.
func (s *Stream) Done() <-chan struct{} { return s.closed }

func (s *Stream) onTrack(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	s.log.Info("track", "kind", track.Kind().String(), "codec", track.Codec().MimeType, "ssrc", uint32(track.SSRC()))
	isVideo := track.Kind() == webrtc.RTPCodecTypeVideo
	// Who reads the track, and its reception statistics: its pipeline's, or
	// for a track no pipeline takes, its own (the publisher still gets
	// receiver reports).
	stats := newRTPStats(track.Codec().ClockRate)
	var consume func()
	switch {
	case isVideo && s.video != nil && strings.EqualFold(track.Codec().MimeType, webrtc.MimeTypeH264):
		stats = s.video.rtp
		consume = func() { s.video.run(track) }
	case track.Kind() == webrtc.RTPCodecTypeAudio:
		s.mu.Lock()
		s.audioInfo = &AudioInfo{Codec: "opus", SampleRate: int(track.Codec().ClockRate), Channels: int(max(track.Codec().Channels, 1))}
		s.mu.Unlock()
		if s.audio != nil && strings.EqualFold(track.Codec().MimeType, webrtc.MimeTypeOpus) {
			stats = s.audio.rtp
			consume = func() { s.audio.run(track) }
		} else {
			consume = func() { s.drainRTP(track, &s.audioBytes, stats) }
		}
	default:
		consume = func() { s.drainRTP(track, nil, stats) }
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.drainRTCP(recv, isVideo, uint32(track.SSRC()), stats)
	}()
	go func() {
		defer s.wg.Done()
		consume()
	}()
}

// drainRTCP reads the receiver's RTCP so pion's interceptors run and its
// buffers never fill, and hands the track's Sender Reports to the A/V clock
// and to the track's reception statistics (for the reports' LSR/DLSR).
func (s *Stream) drainRTCP(recv *webrtc.RTPReceiver, video bool, ssrc uint32, stats *rtpStats) {
	buf := make([]byte, 1500)
	for {
		n, _, err := recv.Read(buf)
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, p := range pkts {
			if sr, ok := p.(*rtcp.SenderReport); ok && (sr.SSRC == ssrc || ssrc == 0) {
				stats.onSenderReport(sr.NTPTime, time.Now())
				s.clock.onSenderReport(video, sr)
			}
		}
	}
}

// drainRTP consumes a track the gateway does not forward (yet), keeping the
// media-arrival state up to date and reporting reception to the publisher.
func (s *Stream) drainRTP(track *webrtc.TrackRemote, bytesIn *atomic.Uint64, stats *rtpStats) {
	buf := make([]byte, 1500)
	ssrc := uint32(track.SSRC())
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		s.onMedia(now)
		if bytesIn != nil {
			bytesIn.Add(uint64(n))
		}
		stats.observe(buf[:n], now)
		s.maybeReport(stats, ssrc, now)
	}
}

// maybeReport sends the publisher a receiver report for ssrc when one is
// due. The track's receive goroutine calls it per packet, so reports need no
// timer; a track that stopped sending has nothing new to report.
func (s *Stream) maybeReport(stats *rtpStats, ssrc uint32, now time.Time) {
	rep, ok := stats.report(ssrc, now)
	if !ok {
		return
	}
	s.writeRTCP(&rtcp.ReceiverReport{SSRC: s.rtcpSSRC, Reports: []rtcp.ReceptionReport{rep}}, "receiver report")
}

// sendNACK asks the publisher to resend packets of ssrc.
func (s *Stream) sendNACK(ssrc uint32, pairs []rtcp.NackPair) {
	s.writeRTCP(&rtcp.TransportLayerNack{SenderSSRC: s.rtcpSSRC, MediaSSRC: ssrc, Nacks: pairs}, "nack")
}

func (s *Stream) writeRTCP(p rtcp.Packet, what string) {
	if err := s.pc.WriteRTCP([]rtcp.Packet{p}); err != nil && !errors.Is(err, context.Canceled) {
		s.log.Debug(what+" not sent", "err", err)
	}
}

// onMedia notes that a packet arrived; the first one makes the publisher
// connected.
func (s *Stream) onMedia(now time.Time) {
	s.lastMedia.Store(now.UnixNano())
	if !s.mediaSeen.Load() && s.mediaSeen.CompareAndSwap(false, true) {
		s.events.publish(EventPublisherConnected, map[string]any{"streamId": s.id})
		close(s.mediaReady)
	}
}

// control runs the stream's periodic work until it closes: REMB while the
// publisher is capped, and the end of a publisher whose media stopped.
func (s *Stream) control() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-tick.C:
			if cap := s.bitrateCap.Load(); cap > 0 && s.video != nil {
				if ssrc := s.video.ssrc.Load(); ssrc != 0 {
					_ = s.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: float32(cap), SSRCs: []uint32{ssrc}}})
				}
			}
			last := s.lastMedia.Load()
			if last == 0 {
				last = s.createdAt.UnixNano()
			}
			if timeout := s.m.cfg.MediaTimeout; now.Sub(time.Unix(0, last)) > timeout {
				s.setCloseCause(fmt.Sprintf("no media for %v", timeout))
				s.m.closeAsync(s)
				return
			}
		}
	}
}

func (s *Stream) setCloseCause(cause string) {
	s.mu.Lock()
	if s.closeCause == "" {
		s.closeCause = cause
	}
	s.mu.Unlock()
}

// setBitrateCap caps the publisher's video (REMB now and every second);
// 0 lifts the cap.
func (s *Stream) setBitrateCap(bps int) {
	s.bitrateCap.Store(int64(bps))
	if bps > 0 && s.video != nil {
		if ssrc := s.video.ssrc.Load(); ssrc != 0 {
			_ = s.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: float32(bps), SSRCs: []uint32{ssrc}}})
		}
	}
}

// Subscribe listens to the stream's events; see eventBus.subscribe.
func (s *Stream) Subscribe(afterID uint64) *Subscription { return s.events.subscribe(afterID) }

func (s *Stream) userMetadata() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.userMeta
}

// SendMetadata writes onMetaData or onCuePoint into every running target at
// the stream's current time. onMetaData is kept and sent again to targets
// that connect later.
func (s *Stream) SendMetadata(handler string, values any) error {
	if err := validateMetadata(handler, values); err != nil {
		return err
	}
	b, err := s.Broadcast()
	if err != nil {
		return err
	}
	var body []byte
	if handler == HandlerOnMetaData {
		s.mu.Lock()
		s.userMeta = values.(map[string]any)
		s.mu.Unlock()
	} else if body, err = flv.AppendDataMessage(nil, handler, values); err != nil {
		return &Error{Code: CodeMetadataInvalid, Message: err.Error(), Err: err}
	}
	n := b.deliverData(handler == HandlerOnMetaData, body, s.currentMillis())
	s.events.publish(EventMetaDataSent, map[string]any{"handlerName": handler, "values": values, "targets": n})
	return nil
}

// currentMillis is the stream's time: that of its newest frame.
func (s *Stream) currentMillis() uint32 {
	var ms uint32
	if s.video != nil {
		ms = s.video.lastMs.Load()
	}
	return max(ms, uint32(s.audio.lastMs.Load()))
}

// requestKeyframe asks the publisher for an IDR.
func (s *Stream) requestKeyframe(ssrc uint32) {
	s.writeRTCP(&rtcp.PictureLossIndication{SenderSSRC: s.rtcpSSRC, MediaSSRC: ssrc}, "pli")
}

// RequestKeyframe asks the publisher for a keyframe now (rate-limited).
func (s *Stream) RequestKeyframe(reason string) {
	if s.video != nil {
		s.video.requestKeyframe(reason)
	}
}

// State is the stream's current state.
func (s *Stream) State() StreamState {
	select {
	case <-s.closed:
		return StateClosed
	default:
	}
	s.mu.Lock()
	b := s.broadcast
	s.mu.Unlock()
	if b != nil && b.active() {
		return StateLive
	}
	if s.mediaSeen.Load() && s.iceUp.Load() {
		return StateConnected
	}
	return StateConnecting
}

// StartBroadcast starts pushing the stream to the given targets and returns
// once every target has answered its publish (or timed out).
func (s *Stream) StartBroadcast(ctx context.Context, specs []TargetSpec) (*Broadcast, error) {
	if err := ValidateTargets(specs); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil, errorf(CodeNotFound, "stream %s is closing", s.id)
	}
	if s.broadcast != nil && s.broadcast.active() {
		s.mu.Unlock()
		return nil, errorf(CodeAlreadyBroadcasting, "stream %s is already broadcasting: stop it first (DELETE /v1/streams/%s/broadcast)", s.id, s.id)
	}
	old := s.broadcast
	b := newBroadcast(s)
	s.broadcast = b
	s.mu.Unlock()
	if old != nil {
		for _, t := range old.Targets() {
			s.m.retireTarget(t)
		}
	}

	// A broadcast that failed to start stays visible, stopped, in the
	// stream's view with each target's error.
	if err := b.start(ctx, specs); err != nil {
		return nil, err
	}
	return b, nil
}

// StartBroadcastWhenReady starts the broadcast in the background as soon as
// media flows, as POST /v1/streams with a "broadcast" asks. Failures show in the broadcast's targets and the stream's log.
func (s *Stream) StartBroadcastWhenReady(specs []TargetSpec) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-s.mediaReady:
		case <-s.ctx.Done():
			return
		}
		if _, err := s.StartBroadcast(s.ctx, specs); err != nil {
			s.log.Warn("broadcast did not start", "err", AsError(err).Message)
		}
	}()
}

// Broadcast returns the running broadcast.
func (s *Stream) Broadcast() (*Broadcast, error) {
	s.mu.Lock()
	b := s.broadcast
	s.mu.Unlock()
	if b == nil || !b.active() {
		return nil, errorf(CodeNotBroadcasting, "stream %s is not broadcasting", s.id)
	}
	return b, nil
}

// StopBroadcast ends the running broadcast cleanly: every ingest is told
// FCUnpublish/deleteStream and closed.
func (s *Stream) StopBroadcast(ctx context.Context) (*Broadcast, error) {
	s.mu.Lock()
	b := s.broadcast
	s.mu.Unlock()
	if b == nil || !b.active() {
		return nil, errorf(CodeNotBroadcasting, "stream %s is not broadcasting", s.id)
	}
	b.stop(ctx)
	return b, nil
}

// SetMuted changes the mute flags; nil leaves a flag as it is.
func (s *Stream) SetMuted(audio, video *bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if audio != nil {
		s.audioMuted = *audio
		s.audio.muted.Store(*audio)
	}
	if video != nil {
		s.videoMuted = *video
	}
}

// Close stops the broadcast cleanly, closes the peer connection and waits for
// every goroutine of the stream. Safe to call more than once.
func (s *Stream) Close(ctx context.Context) {
	s.once.Do(func() {
		s.mu.Lock()
		s.closing = true
		b := s.broadcast
		cause := s.closeCause
		s.mu.Unlock()
		if cause != "" {
			s.events.publish(EventPublisherDisconnected, map[string]any{"streamId": s.id, "reason": cause})
		}
		if b != nil {
			b.stop(ctx)
			for _, t := range b.Targets() {
				s.m.retireTarget(t)
			}
		}
		if err := s.pc.Close(); err != nil {
			s.log.Debug("peer connection close", "err", err)
		}
		s.cancel()
		s.wg.Wait()
		if s.video != nil {
			s.video.close()
		}
		s.m.retire(s)
		s.events.publish(EventStreamClosed, map[string]any{"streamId": s.id})
		s.events.close()
		close(s.closed)
		s.m.forget(s)
		s.log.Info("stream closed", "cause", cause)
	})
	<-s.closed
}

func (s *Stream) String() string { return fmt.Sprintf("stream %s", s.id) }
