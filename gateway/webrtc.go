package gateway

import (
	"fmt"
	"net"
	"strings"

	"github.com/pion/ice/v2"
	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v3"
)

// h264Profiles are the profile-level-ids browsers and OBS offer. pion matches
// H.264 on profile_idc and constraint flags only, so level variants of these
// (42e028, 640034, ...) are accepted too.
var h264Profiles = []string{"42001f", "42e01f", "4d001f", "64001f"}

var videoFeedback = []webrtc.RTCPFeedback{
	{Type: "goog-remb"},
	{Type: "ccm", Parameter: "fir"},
	{Type: "nack"},
	{Type: "nack", Parameter: "pli"},
	{Type: webrtc.TypeRTCPFBTransportCC},
}

// newAPI builds a pion API for one PeerConnection: the codecs the gateway
// accepts (H.264 packetization-mode 1 and Opus, nothing else), NACK, RTCP
// reports and TWCC, and an RTCP counter feeding the stream's stats.
func newAPI(se webrtc.SettingEngine, counters *rtcpCounters) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	for i, profile := range h264Profiles {
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

	// NACKs and receiver reports are the track goroutines' own (nack.go,
	// rtpstats.go), driven by packet arrivals: pion's generator and report
	// interceptors each took a lock and parsed the header per packet and
	// woke every stream on their own tickers.
	reg := &interceptor.Registry{}
	reg.Add(rtcpCounterFactory{c: counters})
	// Transport-wide CC feedback without pion's per-packet goroutine hop.
	reg.Add(twccFactory{})

	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), nil
}

// advertisedMux serves every session on one UDP socket and advertises the
// configured addresses as host candidates instead of every interface.
type advertisedMux struct {
	ice.UDPMux
	addrs []net.Addr
}

func (m advertisedMux) GetListenAddresses() []net.Addr { return m.addrs }

// newSettingEngine configures ICE for a single muxed UDP port. ips, when not
// empty, are the addresses advertised as host candidates (e.g. 127.0.0.1 for
// local use, or a public address in front of a 1:1 NAT).
func newSettingEngine(mux ice.UDPMux, port int, ips []net.IP) webrtc.SettingEngine {
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeQueryOnly)
	se.SetIncludeLoopbackCandidate(true)
	if len(ips) > 0 {
		addrs := make([]net.Addr, len(ips))
		for i, ip := range ips {
			addrs[i] = &net.UDPAddr{IP: ip, Port: port}
		}
		se.SetICEUDPMux(advertisedMux{UDPMux: mux, addrs: addrs})
	} else {
		se.SetICEUDPMux(mux)
	}
	return se
}

// offerMedia is what an offer carries that the gateway can take.
type offerMedia struct {
	video, audio bool // an acceptable codec is offered for that kind
}

// inspectOffer parses an SDP offer and tells which acceptable codecs it has.
// A malformed offer is INVALID_SDP; one with neither H.264 (packetization
// mode 1, a known profile) nor Opus is UNSUPPORTED_CODEC.
func inspectOffer(offer string) (offerMedia, error) {
	var om offerMedia
	if strings.TrimSpace(offer) == "" {
		return om, errorf(CodeInvalidSDP, "the request has no SDP offer: send the publisher's offer in \"sdp\"")
	}
	var sd sdp.SessionDescription
	if err := sd.Unmarshal([]byte(offer)); err != nil {
		return om, &Error{Code: CodeInvalidSDP, Message: "the SDP offer cannot be parsed: " + err.Error()}
	}
	if len(sd.MediaDescriptions) == 0 {
		return om, errorf(CodeInvalidSDP, "the SDP offer has no media sections")
	}
	var offered []string
	for _, md := range sd.MediaDescriptions {
		switch md.MediaName.Media {
		case "video":
			for _, f := range md.MediaName.Formats {
				c, err := sd.GetCodecForPayloadType(parsePT(f))
				if err != nil {
					continue
				}
				offered = append(offered, c.Name)
				if strings.EqualFold(c.Name, "H264") && acceptableH264(c.Fmtp) {
					om.video = true
				}
			}
		case "audio":
			for _, f := range md.MediaName.Formats {
				c, err := sd.GetCodecForPayloadType(parsePT(f))
				if err != nil {
					continue
				}
				offered = append(offered, c.Name)
				if strings.EqualFold(c.Name, "opus") {
					om.audio = true
				}
			}
		}
	}
	if !om.video && !om.audio {
		return om, errorf(CodeUnsupportedCodec,
			"the offer has neither H.264 (packetization-mode=1, profile 42001f, 42e01f, 4d001f or 64001f) nor Opus; offered: %s",
			strings.Join(dedupe(offered), ", "))
	}
	return om, nil
}

func parsePT(s string) uint8 {
	var pt uint8
	for _, c := range s {
		if c < '0' || c > '9' {
			return 255
		}
		pt = pt*10 + uint8(c-'0')
	}
	return pt
}

// acceptableH264 applies pion's own matching rule: packetization-mode 1 and a
// profile_idc + constraint byte equal to one we registered.
func acceptableH264(fmtp string) bool {
	params := map[string]string{}
	for _, kv := range strings.Split(fmtp, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		params[strings.ToLower(k)] = v
	}
	if params["packetization-mode"] != "1" {
		return false
	}
	pl := strings.ToLower(params["profile-level-id"])
	if len(pl) != 6 {
		return false
	}
	for _, p := range h264Profiles {
		if pl[:4] == p[:4] {
			return true
		}
	}
	return false
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
