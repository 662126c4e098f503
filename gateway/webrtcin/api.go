// Package webrtcin is the gateway's WebRTC receive side: one UDP socket
// (ICE mux) for every session, the pion API with the codecs and feedback
// the gateway takes, the publisher's PeerConnection (Session), offer
// inspection, and per-packet receive work (one read loop per track, NACK,
// receiver reports, TWCC feedback, reception statistics). It knows nothing
// of streams or broadcasts.
package webrtcin

import (
	"fmt"

	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v3"
)

// simulcastExtensions are the header extensions simulcast receive needs.
var simulcastExtensions = []string{sdp.SDESMidURI, sdp.SDESRTPStreamIDURI, repairedStreamIDURI}

// repairedStreamIDURI is RFC 8852 repaired-rtp-stream-id (the pion/sdp this
// module uses has no constant for it).
const repairedStreamIDURI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"

// Video codec names, as target specs and --video-codecs write them.
const (
	VideoH264 = "h264"
	VideoVP9  = "vp9"
	VideoAV1  = "av1"
	VideoHEVC = "hevc"
)

// exVideoCodecs are the E-RTMP video codecs' registrations.
var exVideoCodecs = map[string]webrtc.RTPCodecParameters{
	VideoVP9:  {RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"}, PayloadType: 98},
	VideoAV1:  {RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000}, PayloadType: 45},
	VideoHEVC: {RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH265, ClockRate: 90000}, PayloadType: 49},
}

var videoFeedback = []webrtc.RTCPFeedback{
	{Type: "goog-remb"},
	{Type: "ccm", Parameter: "fir"},
	{Type: "nack"},
	{Type: "nack", Parameter: "pli"},
	{Type: webrtc.TypeRTCPFBTransportCC},
}

// newAPIFor builds a pion API for one PeerConnection: the codecs the gateway
// accepts (H.264 packetization-mode 1 in the profiles of offer.go's
// h264Profiles, which InspectOffer checks offers against, and Opus), NACK, RTCP
// reports and TWCC (twccMade, when not nil, is given the connection's
// feedback), and an RTCP counter feeding the stream's stats.
//
// videoCodec (a Video* name) is the one video codec registered: H.264 in
// the profiles of h264Profiles, or VP9 profile 0, AV1 main profile or H.265
// (whose fmtp pion matches on the parameters both sides name, none on ours).
func newAPIFor(se webrtc.SettingEngine, counters *Counters, videoCodec string, twccMade func(*twccFeedback)) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if videoCodec != VideoH264 && videoCodec != "" {
		c, ok := exVideoCodecs[videoCodec]
		if !ok {
			return nil, fmt.Errorf("video codec %q is not one castbridge takes", videoCodec)
		}
		c.RTCPFeedback = videoFeedback
		if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: c.RTPCodecCapability, PayloadType: c.PayloadType}, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("register %s: %w", videoCodec, err)
		}
	}
	for i, profile := range h264Profiles {
		if videoCodec != VideoH264 && videoCodec != "" {
			break
		}
		codec := webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType:     webrtc.MimeTypeH264,
				ClockRate:    90000,
				SDPFmtpLine:  "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + profile,
				RTCPFeedback: videoFeedback,
			},
			PayloadType: webrtc.PayloadType(102 + 2*i),
		}
		if err := me.RegisterCodec(codec, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("register h264 %s: %w", profile, err)
		}
	}
	opus := webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType:     webrtc.MimeTypeOpus,
			ClockRate:    48000,
			Channels:     2,
			SDPFmtpLine:  "minptime=10;useinbandfec=1",
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: webrtc.TypeRTCPFBTransportCC}},
		},
		PayloadType: 111,
	}
	if err := me.RegisterCodec(opus, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("register opus: %w", err)
	}
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, kind); err != nil {
			return nil, fmt.Errorf("register twcc extension: %w", err)
		}
	}
	// Simulcast (a=simulcast with rids, from browsers' sendEncodings and
	// OBS's WHIP simulcast): an answer that takes it must negotiate the RID
	// extensions, and pion tells the layers apart by them (OnTrack fires
	// once per rid).
	for _, uri := range simulcastExtensions {
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: uri}, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("register %s: %w", uri, err)
		}
	}

	// NACKs and receiver reports are the track goroutines' own (nack.go,
	// rtpstats.go), driven by packet arrivals: pion's generator and report
	// interceptors each took a lock and parsed the header per packet and
	// woke every stream on their own tickers.
	reg := &interceptor.Registry{}
	reg.Add(rtcpCounterFactory{c: counters})
	// Transport-wide CC feedback without pion's per-packet goroutine hop.
	reg.Add(twccFactory{made: twccMade})

	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), nil
}
