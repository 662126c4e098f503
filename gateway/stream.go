package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v3"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/audio"
	"github.com/castbridge/castbridge/gateway/avclock"
	"github.com/castbridge/castbridge/gateway/events"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/gateway/meter"
	"github.com/castbridge/castbridge/gateway/outpolicy"
	"github.com/castbridge/castbridge/gateway/rtmpout"
	"github.com/castbridge/castbridge/gateway/video"
	"github.com/castbridge/castbridge/gateway/webrtcin"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/rtp/aubuf"
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

// streamOwner is what a stream needs of the manager that holds it.
type streamOwner interface {
	// closeAsync ends the stream from outside the goroutine that found it
	// gone (pion's callbacks, the stream's own control loop).
	closeAsync(s *Stream)
	// closed forgets a stream that finished closing.
	closed(s *Stream)
	// retireTarget keeps a finished target's counters in the totals.
	retireTarget(t *rtmpout.Target)
	// refused counts a request refused at an apierr.Limit* limit.
	refused(limit string)
	// checkTargets refuses a broadcast of n targets past the limit.
	checkTargets(n int) error
	// accessFor is the output policy of a caller's scope.
	accessFor(sc *Scope) (access, error)
}

// Stream is one publisher's WebRTC session (a "preview" in RtcUser terms):
// the session and its receive pipelines, its events, and the broadcast it
// may run. It serves its targets as their rtmpout.Host.
type Stream struct {
	id        string
	name      string
	createdAt time.Time
	cfg       *Config
	owner     streamOwner
	frames    *media.FramePool
	auBufs    *aubuf.Pool // the video depacketizers' keyframe buffers
	log       *slog.Logger
	// src is where the media comes from; a WebRTC stream's is its session
	// and pipelines (webrtcSource), an RTMP publish's rtmp.
	src      mediaSource
	rtmp     *rtmpSource       // nil for a WebRTC stream
	session  *webrtcin.Session // nil for an RTMP stream
	answer   string
	rejected []webrtcin.Rejection // offered m-sections the answer rejected
	scope    string               // the Scope.Stream it was created under; "" for none

	// ctx ends when the stream closes; every goroutine of the stream runs
	// under it, in wg, and Close joins them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	done   chan struct{}

	mediaSeen  atomic.Bool
	mediaReady chan struct{} // closed on the first media packet
	lastMedia  atomic.Int64  // unix nanos of the last RTP packet
	audioBytes atomic.Uint64
	audioRate  meter.Rate
	videoRate  meter.Rate
	layerRates sync.Map // simulcast rid -> *meter.Rate, sampled by control every second
	events     events.Bus
	bitrateCap atomic.Int64 // bit/s the publisher is capped at with REMB; 0 = none
	iceUp      atomic.Bool
	clock      *avclock.Clock  // the A/V timeline both tracks are placed on
	video      *video.Pipeline // nil for audio-only offers and RTMP streams
	audio      *audio.Pipeline // the publisher's audio (or silence) for every target; nil for RTMP streams

	mu         sync.Mutex
	audioInfo  *AudioInfo
	videoCodec media.VideoCodec // what the answer took, set before any track
	codecTrack atomic.Bool      // a VP9/AV1/H.265 track has the video pipeline
	audioMuted bool
	videoMuted bool
	broadcast  *Broadcast
	closing    bool
	closeCause string
	// userMeta is the client's last onMetaData values: read by targets
	// as they write, on the goroutines that deliver frames (no lock).
	userMeta atomic.Pointer[map[string]any]
}

// newStreamBase is what every stream has whatever its source: its
// identity, lifetime and event tap.
func newStreamBase(m *Manager, id, name string, log *slog.Logger) *Stream {
	sctx, cancel := context.WithCancel(context.Background())
	s := &Stream{
		id:         id,
		name:       name,
		createdAt:  time.Now().UTC(),
		cfg:        &m.cfg,
		owner:      m,
		frames:     m.frames,
		auBufs:     m.auBufs,
		log:        log,
		ctx:        sctx,
		cancel:     cancel,
		done:       make(chan struct{}),
		mediaReady: make(chan struct{}),
	}
	if m.cfg.EventSink != nil {
		s.events.Tap(id, m.cfg.EventSink)
	}
	return s
}

// newStream makes the stream's pipelines and session and answers the offer.
func newStream(ctx context.Context, m *Manager, id, name string, om webrtcin.OfferMedia) (*Stream, error) {
	s := newStreamBase(m, id, name, m.log.With("stream", id))
	s.rejected = om.Rejected
	s.src = webrtcSource{s}
	s.videoCodec = media.VideoCodec(om.VideoCodec)
	if s.videoCodec == "" {
		s.videoCodec = media.CodecH264
	}
	sess, err := m.transport.NewSessionFor(s.log, string(s.videoCodec))
	if err != nil {
		s.cancel()
		return nil, err
	}
	s.session = sess
	s.clock = avclock.New()
	s.audio = audio.New(audio.Config{Clock: s.clock, Frames: s.frames, FollowsVideo: om.Video, Logger: s.log})
	if om.Video {
		vcfg := video.Config{
			Feedback:         sess,
			Clock:            s.clock,
			Frames:           s.frames,
			AUBuffers:        s.auBufs,
			KeyframeInterval: s.cfg.KeyframeInterval,
			OnFrame:          s.audio.FollowVideo,
			VideoGap:         max(s.cfg.VideoGap, 0),
			OnFiller:         s.onFiller,
			Logger:           s.log,
		}
		if om.Audio {
			vcfg.AudioFlowing = s.audio.Flowing
		}
		s.video = video.New(vcfg)
	}
	sess.OnTrack(s.onTrack)
	sess.OnICE(func(st webrtcin.ICEState, detail string) {
		s.log.Debug("ice state", "state", detail)
		s.iceUp.Store(st == webrtcin.ICEUp)
		switch st {
		case webrtcin.ICEDisconnected:
			// A grace period, not an end: ICE comes back when the
			// publisher's packets do, and the broadcast goes on meanwhile
			// (targets keep their connections; audio fills with silence).
			// A publisher that stays away ends on ICE failed or, sooner,
			// on the media timeout (control).
			s.log.Info("ice disconnected: waiting for the publisher to come back", "mediaTimeout", s.cfg.MediaTimeout)
		case webrtcin.ICEFailed:
			// The publisher is gone; end the session from outside pion's callback.
			s.setCloseCause("ice " + detail)
			s.owner.closeAsync(s)
		}
	})
	answer, err := sess.Answer(ctx, om)
	if err != nil {
		_ = sess.Close()
		s.cancel()
		return nil, err
	}
	s.answer = answer
	s.wg.Go(s.control)
	s.wg.Go(func() { s.audio.Run(s.ctx) })
	if s.video != nil {
		s.wg.Go(func() { s.video.RunFiller(s.ctx) })
	}
	s.log.Info("stream created", "video", om.Video, "audio", om.Audio)
	for _, r := range om.Rejected {
		s.log.Info("offered track rejected", "mid", r.MID, "kind", r.Kind, "reason", r.Reason)
	}
	return s, nil
}

// Scope is the name of the scope the stream was created under (Scope.Stream),
// "" when an unrestricted caller created it.
func (s *Stream) Scope() string { return s.scope }

// Name is the name the stream was created with.
func (s *Stream) Name() string { return s.name }

// ID is the stream's API id.
func (s *Stream) ID() string { return s.id }

// Answer is the gateway's SDP answer, with its ICE candidates.
func (s *Stream) Answer() string { return s.answer }

// Rejected lists the offered tracks the answer rejected, and why.
func (s *Stream) Rejected() []webrtcin.Rejection { return slices.Clone(s.rejected) }

// Done is closed when the stream has closed.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Subscribe listens to the stream's events; see events.Bus.Subscribe.
func (s *Stream) Subscribe(afterID uint64) *events.Subscription { return s.events.Subscribe(afterID) }

// SubscribeClient is Subscribe for a client of the API (an SSE stream):
// at most Config.MaxEventSubscribers of them at once per stream; past it,
// LIMIT_EXCEEDED.
func (s *Stream) SubscribeClient(afterID uint64) (*events.Subscription, error) {
	sub, ok := s.events.TrySubscribe(afterID, s.cfg.MaxEventSubscribers)
	if !ok {
		s.owner.refused(apierr.LimitSSESubscribers)
		return nil, &apierr.Error{Code: apierr.CodeLimitExceeded, Limit: apierr.LimitSSESubscribers, StreamID: s.id,
			Message: fmt.Sprintf("stream %s already has %d event subscribers, its limit", s.id, s.cfg.MaxEventSubscribers)}
	}
	return sub, nil
}

// onTrack routes a track to its reader, on pion's goroutine: the video
// pipeline for H.264, the audio pipeline for Opus, and for a track no
// pipeline takes, a reader that keeps its statistics (the publisher still
// gets receiver reports). Each track gets two goroutines the stream owns.
func (s *Stream) onTrack(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	codec := track.Codec()
	ssrc := uint32(track.SSRC())
	s.log.Info("track", "kind", track.Kind().String(), "codec", codec.MimeType, "ssrc", ssrc, "rid", track.RID())
	stats := webrtcin.NewRTPStats(codec.ClockRate)
	arrived := s.onMedia
	var handle func([]byte, time.Time)
	// The video pipeline never blocks (its sink, the broadcast, must not):
	// the socket reader may run it (see webrtcin.Session.ReadRTP).
	inline := webrtcin.InlineAlways
	var onSR func(*rtcp.SenderReport)
	switch {
	case track.Kind() == webrtc.RTPCodecTypeVideo && s.video != nil && strings.EqualFold(codec.MimeType, webrtc.MimeTypeH264) && track.RID() != "":
		// A simulcast layer: the pipeline takes the best one flowing.
		layer := s.video.AddLayer(track.RID(), ssrc)
		stats = layer.RTP()
		handle = layer.HandlePacket
		onSR = func(sr *rtcp.SenderReport) {
			if moved, ok := layer.SenderReport(sr); ok {
				s.clock.OnSenderReport(true, movedSR(moved, s.video.RTPOffset()))
			}
		}
	case track.Kind() == webrtc.RTPCodecTypeVideo && s.video != nil && track.RID() != "" &&
		(s.videoCodec == media.CodecVP9 || s.videoCodec == media.CodecAV1) && mimeVideoCodec(codec.MimeType) == s.videoCodec:
		// A VP9 or AV1 simulcast layer: chosen the same way, by the
		// resolution of its key frames.
		layer, err := s.video.AddCodecLayer(track.RID(), ssrc, s.videoCodec)
		if err != nil {
			s.log.Error("video pipeline", "err", err)
			break
		}
		stats = layer.RTP()
		handle = layer.HandlePacket
		onSR = func(sr *rtcp.SenderReport) {
			if moved, ok := layer.SenderReport(sr); ok {
				s.clock.OnSenderReport(true, movedSR(moved, s.video.RTPOffset()))
			}
		}
	case track.Kind() == webrtc.RTPCodecTypeVideo && s.video != nil && strings.EqualFold(codec.MimeType, webrtc.MimeTypeH264):
		stats = s.video.RTP()
		s.video.Start(ssrc)
		handle = s.video.HandlePacket
		onSR = func(sr *rtcp.SenderReport) { s.clock.OnSenderReport(true, movedSR(sr, s.video.RTPOffset())) }
	case track.Kind() == webrtc.RTPCodecTypeVideo && s.video != nil && mimeVideoCodec(codec.MimeType) == s.videoCodec &&
		s.codecTrack.CompareAndSwap(false, true):
		// VP9, AV1, H.265: one track. Of H.265 simulcast layers (the
		// layer selection reads H.264 SPSs, VP9 and AV1 key frames), the
		// first to arrive is taken and the others only get their
		// statistics and reports.
		if rid := track.RID(); rid != "" {
			s.log.Info("simulcast of a codec other than H.264: forwarding one layer", "rid", rid, "codec", s.videoCodec)
		}
		if err := s.video.StartCodec(ssrc, s.videoCodec); err != nil {
			s.log.Error("video pipeline", "err", err)
			break
		}
		stats = s.video.RTP()
		handle = s.video.HandlePacket
		onSR = func(sr *rtcp.SenderReport) { s.clock.OnSenderReport(true, movedSR(sr, s.video.RTPOffset())) }
	case track.Kind() == webrtc.RTPCodecTypeAudio:
		s.mu.Lock()
		s.audioInfo = &AudioInfo{Codec: "opus", SampleRate: int(codec.ClockRate), Channels: int(max(codec.Channels, 1))}
		s.mu.Unlock()
		arrived = s.onAudio
		if !strings.EqualFold(codec.MimeType, webrtc.MimeTypeOpus) {
			break
		}
		if err := s.audio.StartTrack(); err != nil {
			s.log.Error("opus decoder", "err", err)
			break
		}
		stats = s.audio.RTP()
		handle = s.audio.HandlePacket
		// Decoding for an AAC output is the one costly step, kept off
		// the socket reader.
		inline = func() bool { return !s.audio.Decodes() }
		onSR = func(sr *rtcp.SenderReport) { s.clock.OnSenderReport(false, movedSR(sr, s.audio.RTPOffset())) }
	}
	if rid := track.RID(); rid != "" {
		for _, r := range s.session.LayerRTCPReady(recv, func() { webrtcin.ReadRTCP(recv, rid, ssrc, stats, onSR) }) {
			s.wg.Go(r)
		}
	} else {
		s.wg.Go(func() { webrtcin.ReadRTCP(recv, "", ssrc, stats, onSR) })
	}
	s.wg.Go(func() { s.session.ReadRTP(track, stats, arrived, handle, inline) })
}

// onMedia notes that a packet arrived; the first one makes the publisher
// connected.
func (s *Stream) onMedia(now time.Time, _ int) {
	s.lastMedia.Store(now.UnixNano())
	if !s.mediaSeen.Load() && s.mediaSeen.CompareAndSwap(false, true) {
		s.events.Publish(PublisherConnected{StreamID: s.id})
		close(s.mediaReady)
	}
}

func (s *Stream) onAudio(now time.Time, n int) {
	s.onMedia(now, n)
	s.audioBytes.Add(uint64(n))
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
			s.sendREMB()
			s.sampleLayerRates(now)
			last := s.lastMedia.Load()
			if last == 0 {
				last = s.createdAt.UnixNano()
			}
			if timeout := s.cfg.MediaTimeout; now.Sub(time.Unix(0, last)) > timeout {
				s.setCloseCause(fmt.Sprintf("no media for %v", timeout))
				s.owner.closeAsync(s)
				return
			}
		}
	}
}

// sampleLayerRates keeps each simulcast layer's bit rate current, so that
// a view or stats call reads a rate over the last second or two, not the
// time since the previous call.
func (s *Stream) sampleLayerRates(now time.Time) {
	if s.video == nil || !s.video.Simulcast() {
		return
	}
	layers, _ := s.video.Layers(now)
	for _, l := range layers {
		s.layerBitrate(l, now)
	}
}

// layerBitrate is a simulcast layer's received bit rate.
func (s *Stream) layerBitrate(l video.LayerInfo, now time.Time) float64 {
	r, _ := s.layerRates.LoadOrStore(l.RID, &meter.Rate{})
	return r.(*meter.Rate).Bitrate(l.BytesIn, now)
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
	s.sendREMB()
}

func (s *Stream) sendREMB() {
	if c := s.bitrateCap.Load(); c > 0 && s.video != nil {
		if ssrc := s.video.SSRC(); ssrc != 0 {
			s.session.SendREMB(c, ssrc)
		}
	}
}

// The stream as its targets' rtmpout.Host.

// RequestKeyframe asks the publisher for a keyframe now (rate-limited).
func (s *Stream) RequestKeyframe(reason string) { s.src.RequestKeyframe(reason) }

// Publish reports an event on the stream's bus.
func (s *Stream) Publish(p events.Payload) { s.events.Publish(p) }

// HasVideo reports whether the stream has a video pipeline.
func (s *Stream) HasVideo() bool { return s.src.HasVideo() }

// ObservedFPS is the video's frame rate as received.
func (s *Stream) ObservedFPS() float64 { return s.src.FPS() }

// movedSR is a Sender Report with its RTP time on the pipeline's timeline,
// which rebased the publisher's timestamp jumps by offset.
func movedSR(sr *rtcp.SenderReport, offset int64) *rtcp.SenderReport {
	if offset == 0 {
		return sr
	}
	c := *sr
	c.RTPTime += uint32(offset)
	return &c
}

// ObservedVideoBitrate is the video's average bit rate as received, bit/s.
func (s *Stream) ObservedVideoBitrate() float64 { return s.src.VideoBitrate(time.Now()) }

// UserMetadata is the client's last onMetaData values; for an RTMP stream,
// laid over the publisher's own onMetaData (the client's win).
func (s *Stream) UserMetadata() map[string]any {
	var user map[string]any
	if p := s.userMeta.Load(); p != nil {
		user = *p
	}
	if s.rtmp == nil {
		return user
	}
	return s.rtmp.metadata(user)
}

func (s *Stream) targetSettings(p *outpolicy.Policy) rtmpout.Settings {
	return rtmpout.Settings{PublishTimeout: s.cfg.PublishTimeout, Reconnect: s.cfg.Reconnect, RootCAs: s.cfg.RTMPSRootCAs, Policy: p,
		Observe: s.cfg.hist.observers(), Logger: s.log}
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
		user := values.(map[string]any)
		s.userMeta.Store(&user)
	} else if body, err = flv.AppendDataMessage(nil, handler, values); err != nil {
		return apierr.Wrap(apierr.CodeMetadataInvalid, err, "%v", err)
	}
	n := b.deliverData(handler == HandlerOnMetaData, body, s.currentMillis())
	s.events.Publish(MetaDataSent{HandlerName: handler, Values: values, Targets: n})
	return nil
}

// currentMillis is the stream's time: that of its newest frame.
func (s *Stream) currentMillis() uint32 { return s.src.LastMillis() }

// State is the stream's current state.
func (s *Stream) State() StreamState {
	select {
	case <-s.done:
		return StateClosed
	default:
	}
	s.mu.Lock()
	b := s.broadcast
	s.mu.Unlock()
	if b != nil && b.active() {
		return StateLive
	}
	if s.rtmp != nil {
		if s.rtmp.publishing() {
			return StateConnected
		}
		return StateConnecting
	}
	if s.mediaSeen.Load() && s.iceUp.Load() {
		return StateConnected
	}
	return StateConnecting
}

// StartBroadcast starts pushing the stream to the given targets and returns
// once every target has answered its publish (or timed out). ctx bounds
// only the checks of Icecast sources: the publish handshakes outlive a
// client that hangs up, and end with the stream.
func (s *Stream) StartBroadcast(ctx context.Context, specs []rtmpout.Spec) (*Broadcast, error) {
	return s.StartScopedBroadcast(ctx, specs, nil)
}

// StartScopedBroadcast is StartBroadcast for a caller of scope sc (nil: the
// unrestricted one): its targets are checked and dialed under the scope's
// output policy.
func (s *Stream) StartScopedBroadcast(ctx context.Context, specs []rtmpout.Spec, sc *Scope) (*Broadcast, error) {
	acc, err := s.owner.accessFor(sc)
	if err != nil {
		return nil, err
	}
	return s.startBroadcast(ctx, specs, acc)
}

func (s *Stream) startBroadcast(ctx context.Context, specs []rtmpout.Spec, acc access) (*Broadcast, error) {
	if err := rtmpout.ValidateAllFor(specs, acc.policy); err != nil {
		return nil, err
	}
	if err := s.checkVideoCodecs(specs); err != nil {
		return nil, err
	}
	if err := s.checkAudioCodecs(specs); err != nil {
		return nil, err
	}
	if err := s.owner.checkTargets(len(specs)); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil, &apierr.Error{Code: apierr.CodeNotFound, Message: fmt.Sprintf("stream %s is closing", s.id), StreamID: s.id}
	}
	if s.broadcast != nil && s.broadcast.active() {
		s.mu.Unlock()
		return nil, &apierr.Error{Code: apierr.CodeAlreadyBroadcasting, StreamID: s.id,
			Message: fmt.Sprintf("stream %s is already broadcasting: stop it first", s.id)}
	}
	old := s.broadcast
	b := newBroadcast(s)
	s.broadcast = b
	s.mu.Unlock()
	if old != nil {
		for _, t := range old.Targets() {
			s.owner.retireTarget(t)
		}
	}

	// A broadcast that failed to start stays visible, stopped, in the
	// stream's view with each target's error.
	if err := b.start(ctx, specs, acc); err != nil {
		return nil, err
	}
	return b, nil
}

// StartBroadcastWhenReady starts the broadcast on a goroutine of the
// stream's as soon as media flows, as creating a stream with a broadcast
// asks. Failures show in the broadcast's targets and the stream's log.
func (s *Stream) StartBroadcastWhenReady(specs []rtmpout.Spec) {
	acc, _ := s.owner.accessFor(nil) // the unrestricted caller's access never fails
	s.startWhenReady(specs, acc)
}

func (s *Stream) startWhenReady(specs []rtmpout.Spec, acc access) {
	s.wg.Go(func() {
		select {
		case <-s.mediaReady:
		case <-s.ctx.Done():
			return
		}
		if _, err := s.startBroadcast(s.ctx, specs, acc); err != nil {
			s.log.Warn("broadcast did not start", "err", apierr.As(err).Message)
		}
	})
}

// Broadcast returns the running broadcast.
func (s *Stream) Broadcast() (*Broadcast, error) {
	s.mu.Lock()
	b := s.broadcast
	s.mu.Unlock()
	if b == nil || !b.active() {
		return nil, &apierr.Error{Code: apierr.CodeNotBroadcasting, StreamID: s.id, Message: fmt.Sprintf("stream %s is not broadcasting", s.id)}
	}
	return b, nil
}

// StopBroadcast ends the running broadcast cleanly: every ingest is told
// FCUnpublish/deleteStream and closed, within the stream's close timeout.
func (s *Stream) StopBroadcast() (*Broadcast, error) {
	b, err := s.Broadcast()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CloseTimeout)
	defer cancel()
	b.stop(ctx)
	return b, nil
}

// SetMuted changes the mute flags; nil leaves a flag as it is.
func (s *Stream) SetMuted(audio, video *bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if audio != nil {
		s.audioMuted = *audio
		if s.audio != nil {
			s.audio.SetMuted(*audio)
		} else if s.rtmp != nil {
			s.rtmp.setMuted(*audio)
		}
	}
	if video != nil {
		s.videoMuted = *video
		if s.video != nil {
			s.video.SetMuted(*video)
		}
	}
}

// onFiller reports the video filler starting or ending (video.Config's
// OnFiller: on a pipeline goroutine, never blocking).
func (s *Stream) onFiller(active bool, reason video.FillReason) {
	s.events.Publish(VideoFiller{StreamID: s.id, Active: active, Reason: string(reason)})
}

// Close stops the broadcast cleanly, closes the peer connection and waits for
// every goroutine of the stream. The ingests get the stream's close timeout
// to be told goodbye; then their connections are cut. Safe to call more
// than once and from any goroutine but the stream's own.
func (s *Stream) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CloseTimeout)
	defer cancel()
	s.close(ctx)
}

// close is Close with the deadline for the clean stop in ctx.
func (s *Stream) close(ctx context.Context) {
	s.once.Do(func() {
		s.mu.Lock()
		s.closing = true
		b := s.broadcast
		cause := s.closeCause
		s.mu.Unlock()
		if cause != "" {
			s.events.Publish(PublisherDisconnected{StreamID: s.id, Reason: cause})
		}
		if b != nil {
			b.stop(ctx)
			for _, t := range b.Targets() {
				s.owner.retireTarget(t)
			}
		}
		if s.session != nil {
			if err := s.session.Close(); err != nil {
				s.log.Debug("peer connection close", "err", err)
			}
		}
		if s.rtmp != nil {
			s.rtmp.close()
		}
		s.cancel()
		s.wg.Wait()
		if s.video != nil {
			s.video.Close()
		}
		s.owner.closed(s)
		s.events.Publish(StreamClosed{StreamID: s.id})
		s.events.Close()
		close(s.done)
		s.log.Info("stream closed", "cause", cause)
	})
	<-s.done
}

func (s *Stream) String() string { return fmt.Sprintf("stream %s", s.id) }
