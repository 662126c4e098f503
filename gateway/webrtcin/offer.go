package webrtcin

import (
	"strings"

	"github.com/pion/sdp/v3"

	"github.com/castbridge/castbridge/gateway/apierr"
)

// OfferMedia is what an offer carries that the gateway can take.
type OfferMedia struct {
	Video, Audio bool // an acceptable codec is offered for that kind
}

// InspectOffer parses an SDP offer and tells which acceptable codecs it has.
// A malformed offer is INVALID_SDP; one with neither H.264 (packetization
// mode 1, a known profile) nor Opus is UNSUPPORTED_CODEC.
func InspectOffer(offer string) (OfferMedia, error) {
	var om OfferMedia
	if strings.TrimSpace(offer) == "" {
		return om, apierr.Errorf(apierr.CodeInvalidSDP, "the request has no SDP offer: send the publisher's offer in \"sdp\"")
	}
	var sd sdp.SessionDescription
	if err := sd.Unmarshal([]byte(offer)); err != nil {
		return om, &apierr.Error{Code: apierr.CodeInvalidSDP, Message: "the SDP offer cannot be parsed: " + err.Error()}
	}
	if len(sd.MediaDescriptions) == 0 {
		return om, apierr.Errorf(apierr.CodeInvalidSDP, "the SDP offer has no media sections")
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
					om.Video = true
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
					om.Audio = true
				}
			}
		}
	}
	if !om.Video && !om.Audio {
		return om, apierr.Errorf(apierr.CodeUnsupportedCodec,
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
