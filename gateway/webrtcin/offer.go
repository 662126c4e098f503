package webrtcin

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"

	"github.com/castbridge/castbridge/gateway/apierr"
)

// Bounds on what an offer may carry: real publishers send two or three
// m-sections with a dozen codecs each.
const (
	// Bounds checked by prescanOffer in one pass before the offer is
	// parsed, so that no offer costs more than reading 64 KiB once.
	// Exported for the API's documentation (httpapi/openapi.json states
	// them and its test compares).
	MaxOfferBytes    = 64 << 10
	MaxSDPLineLen    = 4096
	MaxCandidates    = 64 // a=candidate lines per m-section
	MaxFormats       = 64 // payload types on one m= line
	MaxMediaSections = 16
	maxMIDLen        = 32
)

// Rejection is an offered m-section the gateway does not take, and why. The
// answer rejects it (port 0); the API shows the list.
type Rejection struct {
	MID    string `json:"mid"`
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
}

// OfferMedia is what an offer carries that the gateway can take, and the
// offer as pion is given it.
type OfferMedia struct {
	Video, Audio bool // an m-section of that kind is taken
	// VideoCodec is the codec the taken video section is answered with
	// (a Video* name): the first of InspectOfferFor's list it offers.
	VideoCodec string
	// VideoUnmatched: a video section the publisher sends on was rejected
	// for its codecs alone; VideoRejection is the reason given.
	VideoUnmatched bool
	VideoRejection string
	Rejected       []Rejection // m-sections the answer rejects, in offer order

	sdp      string // the normalised offer that pion answers
	rejected []int  // indices of the rejected m-sections
	mids     []string
	// formats are the first payload type each rejected section offered,
	// with its rtpmap: the rejection echoes it.
	formats map[int]offeredCodec
	// payloadMIDs: the payload types whose streams the session binds to
	// their section itself (ptdemux.go).
	payloadMIDs map[uint8]string
}

// InspectOffer parses an SDP offer, decides which m-sections the gateway
// takes and normalises the offer for pion:
//
//   - A BUNDLE group's m-sections all take the offerer-tagged section's ICE
//     credentials, fingerprints and candidates (RFC 8843 §7.3.1: the
//     answerer uses the tagged section's transport). aiortc offers its own
//     per section; pion would refuse the offer.
//   - H.264 with packetization-mode=1 and no profile-level-id gets the
//     RFC 6184 default, 42000a (GStreamer webrtcbin's default caps).
//   - A section the gateway does not take (no acceptable codec, a second
//     track of a kind, one the publisher does not send on) is made inactive
//     for pion and rejected in the answer with a reason.
//
// A malformed offer is INVALID_SDP. One whose sections need transports of
// their own (no BUNDLE group, differing ICE credentials) or that has neither
// H.264 (packetization-mode 1, a profile h264Profiles lists) nor Opus is
// UNSUPPORTED_CODEC, with a message that says how to fix it.
func InspectOffer(offer string) (OfferMedia, error) {
	return InspectOfferFor(offer, []string{VideoH264})
}

// InspectOfferFor is InspectOffer taking video in any of videoCodecs
// (Video* names, in order of preference): a video section is taken when it
// offers one of them, and OfferMedia.VideoCodec is the first it offers.
func InspectOfferFor(offer string, videoCodecs []string) (OfferMedia, error) {
	var om OfferMedia
	if strings.TrimSpace(offer) == "" {
		return om, apierr.Errorf(apierr.CodeInvalidSDP, "the request has no SDP offer: send the publisher's offer in \"sdp\"")
	}
	if err := prescanOffer(offer); err != nil {
		return om, err
	}
	var sd sdp.SessionDescription
	if err := sd.Unmarshal([]byte(offer)); err != nil {
		return om, &apierr.Error{Code: apierr.CodeInvalidSDP, Message: "the SDP offer cannot be parsed: " + err.Error()}
	}
	if len(sd.MediaDescriptions) == 0 {
		return om, apierr.Errorf(apierr.CodeInvalidSDP, "the SDP offer has no media sections")
	}
	if n := len(sd.MediaDescriptions); n > MaxMediaSections {
		return om, apierr.Errorf(apierr.CodeInvalidSDP, "the SDP offer has %d media sections; at most %d are taken", n, MaxMediaSections)
	}
	om.mids = make([]string, len(sd.MediaDescriptions))
	for i, md := range sd.MediaDescriptions {
		mid, _ := md.Attribute(sdp.AttrKeyMID)
		if !validMID(mid) {
			return om, apierr.Errorf(apierr.CodeInvalidSDP, "m-section %d has no valid a=mid (a token of at most %d characters)", i, maxMIDLen)
		}
		om.mids[i] = mid
	}
	var offered []string
	taken := map[string]string{} // kind -> mid of the section taken
	firstOfKind := map[string]int{}
	for i, md := range sd.MediaDescriptions {
		kind := md.MediaName.Media
		if kind != "video" && kind != "audio" {
			continue
		}
		if _, ok := firstOfKind[kind]; !ok {
			firstOfKind[kind] = i
		}
		codecs := sectionCodecs(md)
		for _, c := range codecs {
			offered = append(offered, truncate(c.name))
		}
		ok := false
		h264OK := false
		for _, c := range codecs {
			if kind == "video" && c.h264Mode1() {
				if fixed, acceptable := acceptableH264(c.fmtp); acceptable {
					h264OK = true
					if fixed != c.fmtp {
						md.Attributes[c.fmtpAttr].Value = strconv.Itoa(int(c.pt)) + " " + fixed
					}
				}
			}
			if kind == "audio" && strings.EqualFold(c.name, "opus") {
				ok = true
			}
		}
		videoCodec := ""
		if kind == "video" {
			videoCodec = chooseVideoCodec(codecs, videoCodecs, h264OK)
			ok = videoCodec != ""
		}
		var reason string
		switch dir := direction(&sd, md); {
		case md.MediaName.Port.Value == 0 && !hasAttr(md, "bundle-only"):
			reason = "the publisher rejected it itself (port 0)"
		case dir == "recvonly" || dir == "inactive":
			reason = fmt.Sprintf("the publisher sends nothing on it (a=%s)", dir)
		case !ok && kind == "video":
			if len(videoCodecs) == 1 && videoCodecs[0] == VideoH264 {
				reason = "no H.264 with packetization-mode=1 and a supported profile offered (offered: " + describe(codecs) + ")"
			} else {
				reason = "none of the video codecs castbridge takes (" + strings.Join(videoCodecs, ", ") + ") offered (offered: " + describe(codecs) + ")"
			}
			if offersVP8(codecs) {
				reason += "; " + vp8Hint
			}
			if !om.VideoUnmatched {
				om.VideoUnmatched, om.VideoRejection = true, reason
			}
		case !ok:
			reason = "no Opus offered (offered: " + describe(codecs) + ")"
		case taken[kind] != "":
			reason = fmt.Sprintf("the gateway takes one %s track; mid %s carries it", kind, taken[kind])
		default:
			taken[kind] = om.mids[i]
			if kind == "video" {
				om.VideoCodec = videoCodec
			}
			continue
		}
		om.Rejected = append(om.Rejected, Rejection{MID: om.mids[i], Kind: kind, Reason: reason})
		om.rejected = append(om.rejected, i)
		if len(codecs) > 0 {
			if om.formats == nil {
				om.formats = map[int]offeredCodec{}
			}
			om.formats[i] = codecs[0]
		}
	}
	om.Video, om.Audio = taken["video"] != "", taken["audio"] != ""
	if err := unifyBundle(&sd, om.mids, om.rejected); err != nil {
		return om, err
	}
	if !om.Video && !om.Audio {
		msg := fmt.Sprintf("the offer has neither H.264 (packetization-mode=1; profile baseline, constrained baseline, main or high) nor Opus that the publisher sends; offered: %s",
			strings.Join(dedupe(offered), ", "))
		if slices.ContainsFunc(offered, func(n string) bool { return strings.EqualFold(n, "VP8") }) {
			msg += "; " + vp8Hint
		}
		return om, apierr.Errorf(apierr.CodeUnsupportedCodec, "%s", msg)
	}

	// pion negotiates each kind's codecs on the first section of that kind
	// only, so a rejected first section takes the codecs of the section that
	// is taken; every rejected section is inactive for pion.
	for _, i := range om.rejected {
		md := sd.MediaDescriptions[i]
		kind := md.MediaName.Media
		if firstOfKind[kind] == i && taken[kind] != "" {
			copyCodecs(md, sd.MediaDescriptions[slices.Index(om.mids, taken[kind])])
		}
		setInactive(md)
	}
	om.payloadMIDs = payloadMIDs(&sd, om.mids, om.rejected)
	b, err := sd.Marshal()
	if err != nil {
		return om, apierr.Wrap(apierr.CodeInvalidSDP, err, "the SDP offer cannot be rewritten: %v", err)
	}
	om.sdp = string(b)
	return om, nil
}

// rejectInAnswer rejects in pion's answer the sections InspectOffer did
// not take: port 0, out of the BUNDLE group, with their mid. Candidates pion
// put on a rejected section move to the first section taken.
func (om OfferMedia) rejectInAnswer(answer string) (string, error) {
	if len(om.rejected) == 0 {
		return answer, nil
	}
	var sd sdp.SessionDescription
	if err := sd.Unmarshal([]byte(answer)); err != nil {
		return "", fmt.Errorf("parse answer: %w", err)
	}
	if len(sd.MediaDescriptions) != len(om.mids) {
		return "", fmt.Errorf("answer has %d media sections, offer %d", len(sd.MediaDescriptions), len(om.mids))
	}
	var moved []sdp.Attribute
	for _, i := range om.rejected {
		md := sd.MediaDescriptions[i]
		md.MediaName.Port = sdp.RangedPort{Value: 0}
		attrs := md.Attributes[:0]
		for _, a := range md.Attributes {
			if a.Key == "candidate" || a.Key == "end-of-candidates" {
				moved = append(moved, a)
				continue
			}
			attrs = append(attrs, a)
		}
		md.Attributes = attrs
		if _, ok := md.Attribute(sdp.AttrKeyMID); !ok {
			md.Attributes = append(md.Attributes, sdp.Attribute{Key: sdp.AttrKeyMID, Value: om.mids[i]})
		}
		// A rejected section lists one of the offer's formats (RFC 3264
		// §6 allows any); aiortc refuses a video or audio section with no
		// codec in common, even at port 0.
		if c, ok := om.formats[i]; ok {
			pt := strconv.Itoa(int(c.pt))
			md.MediaName.Formats = []string{pt}
			md.Attributes = slices.DeleteFunc(md.Attributes, func(a sdp.Attribute) bool {
				return a.Key == "rtpmap" || a.Key == "fmtp" || a.Key == "rtcp-fb"
			})
			if c.rtpmap != "" {
				md.Attributes = append(md.Attributes, sdp.Attribute{Key: "rtpmap", Value: pt + " " + c.rtpmap})
			}
		}
	}
	for i, a := range sd.Attributes {
		if a.Key != sdp.AttrKeyGroup || !strings.HasPrefix(a.Value, "BUNDLE") {
			continue
		}
		items := strings.Fields(a.Value)[1:]
		items = slices.DeleteFunc(items, func(mid string) bool {
			for _, r := range om.rejected {
				if om.mids[r] == mid {
					return true
				}
			}
			return false
		})
		sd.Attributes[i].Value = strings.Join(append([]string{"BUNDLE"}, items...), " ")
	}
	// pion's own rejection of a section with no codec carries no
	// transport; aiortc refuses an answer section without ICE credentials
	// or RTCP mux even at port 0, so every rejected section gets the answer's.
	var transport []sdp.Attribute
	for i, md := range sd.MediaDescriptions {
		if slices.Contains(om.rejected, i) {
			continue
		}
		for _, a := range md.Attributes {
			if a.Key == "ice-ufrag" || a.Key == "ice-pwd" || a.Key == "fingerprint" || a.Key == "setup" || a.Key == "rtcp-mux" {
				transport = append(transport, a)
			}
		}
		break
	}
	for _, i := range om.rejected {
		md := sd.MediaDescriptions[i]
		for _, a := range transport {
			if !hasAttr(md, a.Key) {
				md.Attributes = append(md.Attributes, a)
			}
		}
	}
	if len(moved) > 0 {
		for i, md := range sd.MediaDescriptions {
			if slices.Contains(om.rejected, i) {
				continue
			}
			if !slices.ContainsFunc(md.Attributes, func(a sdp.Attribute) bool { return a.Key == "candidate" }) {
				md.Attributes = append(md.Attributes, moved...)
			}
			break
		}
	}
	b, err := sd.Marshal()
	if err != nil {
		return "", fmt.Errorf("marshal answer: %w", err)
	}
	return string(b), nil
}

// transportKeys are the attributes that make an m-section's transport.
var transportKeys = []string{"ice-ufrag", "ice-pwd", "fingerprint", "candidate", "end-of-candidates"}

// unifyBundle gives every m-section of the BUNDLE group the tagged
// section's transport attributes and checks that one transport serves all
// sections (pion has one per PeerConnection). The tagged section is the
// group's first that the answer does not reject: when the offerer-tagged
// one is rejected, the answer's group starts with the next, and the
// offerer sends on that section's transport (RFC 8843 §7.3.3; aiortc does).
func unifyBundle(sd *sdp.SessionDescription, mids []string, rejected []int) error {
	var group []string
	for _, a := range sd.Attributes {
		if a.Key == sdp.AttrKeyGroup && strings.HasPrefix(a.Value, "BUNDLE ") {
			group = strings.Fields(a.Value)[1:]
			break
		}
	}
	if len(group) > 0 {
		ti := -1
		for _, mid := range group {
			i := slices.Index(mids, mid)
			if i < 0 {
				return apierr.Errorf(apierr.CodeInvalidSDP, "the BUNDLE group's mid %q names no m-section", truncate(mid))
			}
			if ti < 0 && !slices.Contains(rejected, i) {
				ti = i
			}
		}
		if ti < 0 {
			ti = slices.Index(mids, group[0])
		}
		var transport []sdp.Attribute
		for _, a := range sd.MediaDescriptions[ti].Attributes {
			if slices.Contains(transportKeys, a.Key) {
				transport = append(transport, a)
			}
		}
		for i, md := range sd.MediaDescriptions {
			if i == ti || !slices.Contains(group, mids[i]) {
				continue
			}
			md.Attributes = slices.DeleteFunc(md.Attributes, func(a sdp.Attribute) bool { return slices.Contains(transportKeys, a.Key) })
			md.Attributes = append(md.Attributes, transport...)
		}
	}
	ref := -1
	for i, md := range sd.MediaDescriptions {
		if md.MediaName.Port.Value == 0 && !hasAttr(md, "bundle-only") {
			continue // rejected by the publisher: pion still reads its attributes
		}
		if ref < 0 {
			ref = i
			continue
		}
		for _, key := range []string{"ice-ufrag", "ice-pwd", "fingerprint"} {
			if effective(sd, md, key) == effective(sd, sd.MediaDescriptions[ref], key) {
				continue
			}
			where := "no BUNDLE group joins them"
			if len(group) > 0 {
				where = "the BUNDLE group does not hold both"
			}
			return apierr.Errorf(apierr.CodeUnsupportedOffer,
				"the offer's m-sections mid %s and mid %s have their own transports (different %s) and %s: castbridge receives every track on one transport. "+
					"Offer with bundle-policy max-bundle (RTCPeerConnection bundlePolicy \"max-bundle\", GStreamer webrtcbin bundle-policy=max-bundle) or put every m-section in one a=group:BUNDLE",
				mids[ref], mids[i], key, where)
		}
	}
	return nil
}

// effective is an attribute's value for an m-section: its own, else the
// session's.
func effective(sd *sdp.SessionDescription, md *sdp.MediaDescription, key string) string {
	if v, ok := md.Attribute(key); ok {
		return v
	}
	v, _ := sd.Attribute(key)
	return v
}

func hasAttr(md *sdp.MediaDescription, key string) bool {
	_, ok := md.Attribute(key)
	return ok
}

var directions = []string{"sendrecv", "sendonly", "recvonly", "inactive"}

// direction is the section's direction from the publisher's side.
func direction(sd *sdp.SessionDescription, md *sdp.MediaDescription) string {
	for _, d := range directions {
		if hasAttr(md, d) {
			return d
		}
	}
	for _, d := range directions {
		if _, ok := sd.Attribute(d); ok {
			return d
		}
	}
	return "sendrecv"
}

func setInactive(md *sdp.MediaDescription) {
	md.Attributes = slices.DeleteFunc(md.Attributes, func(a sdp.Attribute) bool { return slices.Contains(directions, a.Key) })
	md.Attributes = append(md.Attributes, sdp.Attribute{Key: "inactive"})
}

// copyCodecs gives dst the formats and codec attributes of src.
func copyCodecs(dst, src *sdp.MediaDescription) {
	codecKeys := []string{"rtpmap", "fmtp", "rtcp-fb"}
	dst.MediaName.Formats = slices.Clone(src.MediaName.Formats)
	dst.Attributes = slices.DeleteFunc(dst.Attributes, func(a sdp.Attribute) bool { return slices.Contains(codecKeys, a.Key) })
	for _, a := range src.Attributes {
		if slices.Contains(codecKeys, a.Key) {
			dst.Attributes = append(dst.Attributes, a)
		}
	}
}

// vp8Hint is what a rejection of VP8 says: no RTMP mapping exists for it.
const vp8Hint = "VP8 has no RTMP or Enhanced RTMP mapping: prefer H.264, AV1 or VP9 (RTCRtpTransceiver.setCodecPreferences)"

func offersVP8(codecs []offeredCodec) bool {
	return slices.ContainsFunc(codecs, func(c offeredCodec) bool { return strings.EqualFold(c.name, "VP8") })
}

// chooseVideoCodec is the first of accepted (Video* names, in order of
// preference) the section offers in a form castbridge takes: H.264 as
// acceptableH264 has it (h264OK), VP9 profile 0, AV1 main profile, H.265.
func chooseVideoCodec(codecs []offeredCodec, accepted []string, h264OK bool) string {
	for _, want := range accepted {
		for _, c := range codecs {
			p := fmtpParams(c.fmtp)
			switch {
			case want == VideoH264 && h264OK:
				return want
			case want == VideoVP9 && strings.EqualFold(c.name, "VP9") && (p["profile-id"] == "" || p["profile-id"] == "0"):
				return want
			case want == VideoAV1 && strings.EqualFold(c.name, "AV1") && (p["profile"] == "" || p["profile"] == "0"):
				return want
			case want == VideoHEVC && strings.EqualFold(c.name, "H265"):
				return want
			}
		}
	}
	return ""
}

// offeredCodec is one payload type of an m-section.
type offeredCodec struct {
	pt       uint8
	name     string
	rtpmap   string // the rtpmap after the payload type, "" if none
	fmtp     string
	fmtpAttr int // index of its a=fmtp in the section's attributes, -1 if none
}

func (c offeredCodec) h264Mode1() bool {
	return strings.EqualFold(c.name, "H264") && fmtpParams(c.fmtp)["packetization-mode"] == "1"
}

// staticNames are the RTP/AVP static payload types publishers offer
// without an rtpmap.
var staticNames = map[uint8]string{0: "PCMU", 8: "PCMA", 9: "G722", 13: "CN"}

// sectionCodecs lists the section's payload types with their rtpmap and
// fmtp, from the section's own attributes. One pass over the attributes
// indexes them by payload type, so the cost is linear in the section
// (formats + attributes), not their product; as before, a payload type's
// last rtpmap and last fmtp count.
func sectionCodecs(md *sdp.MediaDescription) []offeredCodec {
	type ptAttrs struct {
		rtpmap, fmtp string
		hasRtpmap    bool
		fmtpAttr     int
	}
	byPT := make(map[string]*ptAttrs, len(md.MediaName.Formats))
	for i, a := range md.Attributes {
		if a.Key != "rtpmap" && a.Key != "fmtp" {
			continue
		}
		pt, rest, ok := strings.Cut(a.Value, " ")
		if !ok {
			continue
		}
		e := byPT[pt]
		if e == nil {
			e = &ptAttrs{fmtpAttr: -1}
			byPT[pt] = e
		}
		if a.Key == "rtpmap" {
			e.rtpmap, e.hasRtpmap = rest, true
		} else {
			e.fmtp, e.fmtpAttr = rest, i
		}
	}
	var out []offeredCodec
	for _, f := range md.MediaName.Formats {
		pt, err := strconv.ParseUint(f, 10, 8)
		if err != nil {
			continue
		}
		c := offeredCodec{pt: uint8(pt), name: staticNames[uint8(pt)], fmtpAttr: -1}
		if e := byPT[f]; e != nil {
			if e.hasRtpmap {
				c.rtpmap = e.rtpmap
				c.name, _, _ = strings.Cut(c.rtpmap, "/")
			}
			c.fmtp, c.fmtpAttr = e.fmtp, e.fmtpAttr
		}
		if c.name == "" {
			c.name = "PT " + f
		}
		out = append(out, c)
	}
	return out
}

// describe names a section's codecs for a rejection reason; H.264 comes
// with what made it unacceptable.
func describe(codecs []offeredCodec) string {
	var names []string
	for _, c := range codecs {
		switch {
		case strings.EqualFold(c.name, "rtx"), strings.EqualFold(c.name, "red"), strings.EqualFold(c.name, "ulpfec"), strings.EqualFold(c.name, "flexfec-03"):
			continue
		case strings.EqualFold(c.name, "H264"):
			p := fmtpParams(c.fmtp)
			mode := p["packetization-mode"]
			if mode == "" {
				mode = "0"
			}
			if mode != "1" {
				names = append(names, "H264 packetization-mode="+truncate(mode))
			} else {
				names = append(names, "H264 profile-level-id="+truncate(p["profile-level-id"]))
			}
		default:
			names = append(names, truncate(c.name))
		}
	}
	names = dedupe(names)
	if len(names) == 0 {
		return "nothing"
	}
	return strings.Join(names, ", ")
}

// h264Profiles are the profile_idc and profile-iop bytes (the first four
// hex digits of profile-level-id) the gateway registers with pion, with
// level 3.1 as a placeholder. pion matches H.264 on packetization-mode and
// those two bytes (internal/fmtp/h264.go), never on the level, so an
// offer's level (1 to 5.2 and up) is answered as offered. The list covers
// what real encoders send: Chromium 42001f/42e01f/4d001f/64001f and
// 640c1f, Firefox 42e01f/42001f, OBS 42e01f/4d001f/64001f, aiortc 42001f/
// 42e01f, GStreamer x264enc 42c0xx/4d40xx/6400xx.
var h264Profiles = []string{
	"42001f", // baseline
	"42c01f", // constrained baseline (constraint_set0+1)
	"42e01f", // constrained baseline (constraint_set0+1+2)
	"4d001f", // main
	"4d401f", // main (constraint_set1)
	"64001f", // high
	"640c1f", // constrained high
}

// h264DefaultProfile is profile-level-id's value when an offer has none
// (RFC 6184 §8.1): baseline, level 1.0.
const h264DefaultProfile = "42000a"

// acceptableH264 tells whether pion will match an H.264 fmtp line exactly
// to one of h264Profiles, and returns the line to give pion: the same, or
// with the default profile-level-id added when it has none.
func acceptableH264(fmtp string) (string, bool) {
	p := fmtpParams(fmtp)
	if p["packetization-mode"] != "1" {
		return fmtp, false
	}
	pl, ok := p["profile-level-id"]
	if !ok {
		pl = h264DefaultProfile
		fmtp = strings.TrimSuffix(strings.TrimSpace(fmtp), ";") + ";profile-level-id=" + h264DefaultProfile
	}
	b, err := hex.DecodeString(pl)
	if err != nil || len(b) != 3 {
		return fmtp, false
	}
	for _, reg := range h264Profiles {
		r, _ := hex.DecodeString(reg)
		if b[0] == r[0] && b[1] == r[1] {
			return fmtp, true
		}
	}
	return fmtp, false
}

// fmtpParams splits an fmtp line the way pion does (internal/fmtp): keys
// lower-cased, values as they are.
func fmtpParams(fmtp string) map[string]string {
	params := map[string]string{}
	for _, kv := range strings.Split(fmtp, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		params[strings.ToLower(k)] = v
	}
	return params
}

// validMID accepts an RFC 5888 identification-tag short enough to echo.
func validMID(mid string) bool {
	if mid == "" || len(mid) > maxMIDLen {
		return false
	}
	for _, c := range mid {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c) {
			return false
		}
	}
	return true
}

// truncate bounds a value from the offer that goes into a message.
func truncate(s string) string {
	const n = 24
	if len(s) > n {
		return s[:n] + "…"
	}
	return strings.ToValidUTF8(s, "?")
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

// prescanOffer checks an offer's size, line lengths, m-sections, formats
// per m-line and candidates per section in one linear pass, before any
// parsing: each limit, when passed, is an INVALID_SDP that names it.
func prescanOffer(offer string) error {
	if len(offer) > MaxOfferBytes {
		return apierr.Errorf(apierr.CodeInvalidSDP, "the SDP offer is %d bytes; at most %d are taken", len(offer), MaxOfferBytes)
	}
	sections, candidates := 0, 0
	for line := range strings.Lines(offer) {
		line = strings.TrimRight(line, "\r\n")
		if len(line) > MaxSDPLineLen {
			return apierr.Errorf(apierr.CodeInvalidSDP, "the SDP offer has a line of %d characters; at most %d are taken", len(line), MaxSDPLineLen)
		}
		switch {
		case strings.HasPrefix(line, "m="):
			sections++
			candidates = 0
			if sections > MaxMediaSections {
				return apierr.Errorf(apierr.CodeInvalidSDP, "the SDP offer has more than %d media sections; at most %d are taken", MaxMediaSections, MaxMediaSections)
			}
			if f := len(strings.Fields(line)) - 3; f > MaxFormats {
				return apierr.Errorf(apierr.CodeInvalidSDP, "m-section %d lists %d formats; at most %d are taken", sections-1, f, MaxFormats)
			}
		case strings.HasPrefix(line, "a=candidate:"):
			candidates++
			if candidates > MaxCandidates {
				return apierr.Errorf(apierr.CodeInvalidSDP, "an m-section of the SDP offer has more than %d candidates; at most %d are taken", MaxCandidates, MaxCandidates)
			}
		}
	}
	return nil
}
