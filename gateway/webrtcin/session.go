package webrtcin

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v3"

	"github.com/castbridge/castbridge/gateway/apierr"
)

// ICEState is what a session's owner needs to know of ICE.
type ICEState int

// ICE states as the gateway sees them.
const (
	ICEPending ICEState = iota // checking, or not started
	ICEUp                      // connected or completed
	// ICEDisconnected: nothing heard from the publisher for a while (its
	// network blinked, or it changes networks). ICE keeps checking and
	// comes back up by itself when packets flow again; not an end.
	ICEDisconnected
	ICEFailed // failed: the publisher is gone
)

// Session is one publisher's PeerConnection as the gateway uses it: the
// offer answered with all the gateway's candidates, the publisher's
// trickled candidates and ICE restarts (trickle.go), and the RTCP feedback
// the gateway sends (from its own sender SSRC, counted).
type Session struct {
	pc       *webrtc.PeerConnection
	ssrc     uint32 // sender SSRC of the gateway's RTCP
	counters *Counters
	log      *slog.Logger
	srflx    func() []string // the transport's srflx candidates now (STUN), nil without

	etag  atomic.Pointer[string] // the ICE session's id (ETag)
	iceMu sync.Mutex             // serialises trickle and restarts
	ice   iceState               // guarded by iceMu

	layerMu   sync.Mutex
	layerRTCP map[*webrtc.RTPReceiver][]func() // simulcast RTCP readers waiting for their last layer

	// Streams bound by payload type (ptdemux.go), for offers that declare
	// no SSRC and no mid extension in more than one m-section.
	demux   *ptDemux
	fast    *fastSession  // nil without the fast path
	twcc    *twccFeedback // the connection's TWCC feedback, for packets pion's interceptors do not see
	onTrack func(*webrtc.TrackRemote, *webrtc.RTPReceiver)
	srtpUp  chan struct{} // closed when pion reports the connection connected
	srtpOne sync.Once
	peekMu  sync.Mutex
	peeked  map[*webrtc.TrackRemote]peekedPacket // guarded by peekMu
	cancel  context.CancelFunc                   // ends bindByPayloadType
	binder  sync.WaitGroup                       // joins bindByPayloadType
}

// NewSession makes a PeerConnection on the transport. Set its handlers
// (OnTrack, OnICE), then Answer the offer.
func (t *Transport) NewSession(log *slog.Logger) (*Session, error) {
	return t.NewSessionFor(log, VideoH264)
}

// NewSessionFor is NewSession for a publisher whose video is to be taken
// in videoCodec (OfferMedia.VideoCodec): its PeerConnection registers that
// video codec alone, so the answer leaves the publisher no other choice.
func (t *Transport) NewSessionFor(log *slog.Logger, videoCodec string) (*Session, error) {
	counters := &Counters{}
	// The session's own view of the shared ICE muxes: its connections'
	// packets pass its payload-type demultiplexer.
	demux := &ptDemux{}
	se := t.se
	se.LoggerFactory = demuxLoggerFactory{t.se.LoggerFactory, demux}
	var fast *fastSession
	if t.fast != nil {
		fast = newFastSession(t.fast, counters)
		se.SetDTLSKeyLogWriter(&fast.sniff)
	}
	se.SetICEUDPMux(sniffUDPMux{t.mux, demux, fast})
	if t.tcp != nil {
		se.SetICETCPMux(sniffTCPMux{t.tcp.mux, demux})
	}
	var twcc *twccFeedback
	api, err := newAPIFor(se, counters, videoCodec, func(f *twccFeedback) { twcc = f })
	if err != nil {
		return nil, apierr.Wrap(apierr.CodeInternal, err, "cannot set up WebRTC")
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, apierr.Wrap(apierr.CodeInternal, err, "cannot create a peer connection")
	}
	s := &Session{pc: pc, ssrc: rand.Uint32(), counters: counters, log: log, srflx: t.stun.srflx, demux: demux, fast: fast, twcc: twcc, srtpUp: make(chan struct{})}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			s.srtpOne.Do(func() { close(s.srtpUp) })
		}
	})
	return s, nil
}

// OnTrack sets the handler pion calls, on its own goroutine, for every
// remote track; the handler starts (and its owner joins) the goroutines
// that read the track. Streams pion cannot bind (ptdemux.go) reach it from
// the session's own goroutine. Set it before Answer.
func (s *Session) OnTrack(f func(*webrtc.TrackRemote, *webrtc.RTPReceiver)) {
	s.onTrack = f
	s.pc.OnTrack(f)
}

// OnICE sets the handler pion calls, on its own goroutine, when ICE changes
// state; detail is pion's name for the state, for logs.
func (s *Session) OnICE(f func(st ICEState, detail string)) {
	s.pc.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) {
		switch st {
		case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
			f(ICEUp, st.String())
		case webrtc.ICEConnectionStateDisconnected:
			f(ICEDisconnected, st.String())
		case webrtc.ICEConnectionStateFailed:
			f(ICEFailed, st.String())
		default:
			f(ICEPending, st.String())
		}
	})
}

// Answer answers the offer InspectOffer normalised and waits (at most until
// ctx ends) for ICE gathering, so the answer carries the gateway's
// candidates; the sections InspectOffer did not take are rejected in it.
// The offer may carry the publisher's candidates or none (they are
// trickled then, see AddCandidates). A refused offer is INVALID_SDP; one no
// answer can be made to, UNSUPPORTED_CODEC. On error the caller still
// closes the session.
func (s *Session) Answer(ctx context.Context, om OfferMedia) (string, error) {
	pc := s.pc
	if om.sdp == "" {
		return "", apierr.Errorf(apierr.CodeInternal, "the offer was not inspected")
	}
	s.iceMu.Lock()
	defer s.iceMu.Unlock()
	if len(om.payloadMIDs) > 0 && s.cancel == nil {
		s.demux.arm(maps.Clone(om.payloadMIDs))
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		s.binder.Go(func() { s.bindByPayloadType(ctx) })
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: om.sdp}); err != nil {
		return "", apierr.Wrap(apierr.CodeInvalidSDP, err, "the SDP offer was refused: %v", err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", apierr.Wrap(apierr.CodeUnsupportedCodec, err, "no answer can be made to this offer: %v", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", apierr.Wrap(apierr.CodeInternal, err, "cannot apply the answer")
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", apierr.Wrap(apierr.CodeInternal, ctx.Err(), "ICE gathering did not finish")
	}
	out, err := om.rejectInAnswer(pc.LocalDescription().SDP)
	if err != nil {
		return "", apierr.Wrap(apierr.CodeInternal, err, "cannot reject the sections not taken in the answer")
	}
	// The public address STUN learned, which pion cannot gather through
	// the shared mux (see withCandidates).
	if out, err = withCandidates(out, s.srflx()); err != nil {
		return "", apierr.Wrap(apierr.CodeInternal, err, "cannot add the public address to the answer")
	}
	s.rememberOffer(om.sdp)
	etag := newETag()
	s.etag.Store(&etag)
	return out, nil
}

// Counters counts the feedback sent to the publisher.
func (s *Session) Counters() *Counters { return s.counters }

// SendNACK asks the publisher to resend packets of ssrc.
func (s *Session) SendNACK(ssrc uint32, pairs []rtcp.NackPair) {
	s.write(&rtcp.TransportLayerNack{SenderSSRC: s.ssrc, MediaSSRC: ssrc, Nacks: pairs}, "nack")
}

// SendPLI asks the publisher for a keyframe of ssrc.
func (s *Session) SendPLI(ssrc uint32) {
	s.write(&rtcp.PictureLossIndication{SenderSSRC: s.ssrc, MediaSSRC: ssrc}, "pli")
}

// SendREMB caps the publisher's bit rate for ssrc.
func (s *Session) SendREMB(bps int64, ssrc uint32) {
	s.write(&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: float32(bps), SSRCs: []uint32{ssrc}}, "remb")
}

// SendReport sends a receiver report with one reception report.
func (s *Session) SendReport(rep rtcp.ReceptionReport) {
	s.write(&rtcp.ReceiverReport{SSRC: s.ssrc, Reports: []rtcp.ReceptionReport{rep}}, "receiver report")
}

func (s *Session) write(p rtcp.Packet, what string) {
	if err := s.pc.WriteRTCP([]rtcp.Packet{p}); err != nil && !errors.Is(err, context.Canceled) {
		s.log.Debug(what+" not sent", "err", err)
	}
}

// RTTMs is the selected ICE candidate pair's current round-trip time.
func (s *Session) RTTMs() float64 {
	for _, st := range s.pc.GetStats() {
		if p, ok := st.(webrtc.ICECandidatePairStats); ok && p.Nominated && p.CurrentRoundTripTime > 0 {
			return math.Round(p.CurrentRoundTripTime*1e5) / 100
		}
	}
	return 0
}

// Close closes the PeerConnection: every track's reads end.
func (s *Session) Close() error {
	err := s.pc.Close()
	s.iceMu.Lock()
	cancel := s.cancel
	s.iceMu.Unlock()
	if cancel != nil {
		cancel()
		s.binder.Wait()
	}
	return err
}
