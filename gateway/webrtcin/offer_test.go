package webrtcin

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/sdp/v3"

	"github.com/castbridge/castbridge/gateway/apierr"
)

func fixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// answerOffer inspects an offer and has a real pion PeerConnection answer it.
func answerOffer(t *testing.T, offer string) (OfferMedia, *sdp.SessionDescription, error) {
	t.Helper()
	om, err := InspectOffer(offer)
	if err != nil {
		return om, nil, err
	}
	tr, err := Listen(ListenConfig{IPs: []net.IP{net.IPv4(127, 0, 0, 1).To4()}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	sess, err := tr.NewSession(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	answer, err := sess.Answer(ctx, om)
	if err != nil {
		return om, nil, err
	}
	var sd sdp.SessionDescription
	if err := sd.Unmarshal([]byte(answer)); err != nil {
		t.Fatalf("answer does not parse: %v\n%s", err, answer)
	}
	return om, &sd, nil
}

// answered is what the answer says of one m-section.
type answered struct {
	mid    string
	port   int
	codecs []string // "H264 <fmtp>" / "opus"
}

func answerSections(sd *sdp.SessionDescription) []answered {
	var out []answered
	for _, md := range sd.MediaDescriptions {
		a := answered{port: md.MediaName.Port.Value}
		a.mid, _ = md.Attribute(sdp.AttrKeyMID)
		for _, c := range sectionCodecs(md) {
			a.codecs = append(a.codecs, strings.TrimSpace(c.name+" "+c.fmtp))
		}
		out = append(out, a)
	}
	return out
}

func bundle(sd *sdp.SessionDescription) string {
	for _, a := range sd.Attributes {
		if a.Key == sdp.AttrKeyGroup && strings.HasPrefix(a.Value, "BUNDLE") {
			return a.Value
		}
	}
	return ""
}

// TestInspectOfferRealPublishers takes offers real publishers sent (aiortc
// 1.4 and GStreamer 1.22 webrtcbin captured here; Chromium, Firefox and OBS
// WHIP as they send them) through InspectOffer and a real pion answer: what
// InspectOffer takes, pion answers with H.264 packetization-mode 1 and Opus.
func TestInspectOfferRealPublishers(t *testing.T) {
	cases := []struct {
		file       string
		videoMID   string
		audioMID   string
		h264Answer string // a profile-level-id the answered H.264 must have
	}{
		{"chromium.sdp", "1", "0", "42001f"},
		{"firefox.sdp", "1", "0", "42e01f"},
		{"obs-whip.sdp", "1", "0", "42e01f"},
		{"aiortc.sdp", "0", "1", "42001f"},
		{"gstreamer-max-bundle.sdp", "video0", "audio1", "42c015"},
		{"gstreamer-default-caps.sdp", "video0", "audio1", h264DefaultProfile},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			t.Parallel()
			om, sd, err := answerOffer(t, fixture(t, c.file))
			if err != nil {
				t.Fatalf("not answered: %v", err)
			}
			if !om.Video || !om.Audio || len(om.Rejected) != 0 {
				t.Fatalf("inspected video=%v audio=%v rejected=%v, want both and none rejected", om.Video, om.Audio, om.Rejected)
			}
			for _, a := range answerSections(sd) {
				if a.port == 0 {
					t.Errorf("mid %s rejected in the answer", a.mid)
				}
				switch a.mid {
				case c.videoMID:
					if len(a.codecs) == 0 {
						t.Fatalf("video answered with no codec")
					}
					for _, codec := range a.codecs {
						if !strings.HasPrefix(codec, "H264 ") || !strings.Contains(codec, "packetization-mode=1") {
							t.Errorf("video answered with %q, want only H.264 packetization-mode=1", codec)
						}
					}
					if !slices.ContainsFunc(a.codecs, func(s string) bool { return strings.Contains(s, "profile-level-id="+c.h264Answer) }) {
						t.Errorf("video answered %v, want profile-level-id=%s among them", a.codecs, c.h264Answer)
					}
				case c.audioMID:
					if len(a.codecs) != 1 || !strings.EqualFold(strings.Fields(a.codecs[0])[0], "opus") {
						t.Errorf("audio answered with %v, want Opus alone", a.codecs)
					}
				default:
					t.Errorf("answer has mid %q, offer had %s and %s", a.mid, c.videoMID, c.audioMID)
				}
			}
			if want := "BUNDLE " + strings.Join(om.mids, " "); bundle(sd) != want {
				t.Errorf("answer's group %q, want %q", bundle(sd), want)
			}
		})
	}
}

// TestInspectOfferBundleCredentials: aiortc's offer has a BUNDLE group with
// its own ufrag, pwd and candidates per m-section; pion refuses it as sent.
// Normalised, every bundled section has the tagged (first) section's.
func TestInspectOfferBundleCredentials(t *testing.T) {
	offer := fixture(t, "aiortc.sdp")
	var raw sdp.SessionDescription
	if err := raw.Unmarshal([]byte(offer)); err != nil {
		t.Fatal(err)
	}
	u0, _ := raw.MediaDescriptions[0].Attribute("ice-ufrag")
	u1, _ := raw.MediaDescriptions[1].Attribute("ice-ufrag")
	if u0 == u1 {
		t.Fatalf("fixture has one ufrag (%s): it no longer tests per-section credentials", u0)
	}
	om, err := InspectOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	var sd sdp.SessionDescription
	if err := sd.Unmarshal([]byte(om.sdp)); err != nil {
		t.Fatal(err)
	}
	attrs := func(md *sdp.MediaDescription, key string) []string {
		var v []string
		for _, a := range md.Attributes {
			if a.Key == key {
				v = append(v, a.Value)
			}
		}
		return v
	}
	for _, key := range []string{"ice-ufrag", "ice-pwd", "fingerprint", "candidate"} {
		want := attrs(raw.MediaDescriptions[0], key)
		if len(want) == 0 {
			t.Fatalf("tagged section has no %s", key)
		}
		for i, md := range sd.MediaDescriptions {
			if got := attrs(md, key); !slices.Equal(got, want) {
				t.Errorf("section %d %s = %q, want the tagged section's %q", i, key, got, want)
			}
		}
	}

	// Unbundled sections with their own credentials: a 422 that says how
	// to fix it, never pion's words.
	for _, offer := range []string{
		fixture(t, "gstreamer-balanced.sdp"),
		strings.Replace(offer, "a=group:BUNDLE 0 1", "a=group:BUNDLE 0", 1),
	} {
		_, err := InspectOffer(offer)
		e := apierr.As(err)
		if err == nil || e.Code != apierr.CodeUnsupportedOffer {
			t.Fatalf("unbundled offer: %v, want UNSUPPORTED_OFFER", err)
		}
		for _, want := range []string{"max-bundle", "one transport", "ice-ufrag"} {
			if !strings.Contains(e.Message, want) {
				t.Errorf("message %q does not say %q", e.Message, want)
			}
		}
		if strings.Contains(strings.ToLower(e.Message), "setremotedescription") {
			t.Errorf("message carries pion's error: %q", e.Message)
		}
	}
}

// TestInspectOfferRejects: tracks the gateway cannot use are rejected in
// the answer (port 0, out of the BUNDLE group) with a reason, and the
// rest is answered.
func TestInspectOfferRejects(t *testing.T) {
	chromium := fixture(t, "chromium.sdp")
	aiortc := fixture(t, "aiortc.sdp")
	// aiortc's video with VP8 alone.
	vp8Only := regexp.MustCompile(`(m=video \d+ UDP/TLS/RTP/SAVPF 97 98) 99 100 101 102`).ReplaceAllString(aiortc, "$1")
	if vp8Only == aiortc {
		t.Fatal("fixture changed: no VP8-only variant")
	}
	// Chromium's offer with a second (screen) video section.
	i := strings.Index(chromium, "m=video")
	video := strings.ReplaceAll(chromium[i:], "a=mid:1", "a=mid:2")
	twoVideos := strings.Replace(chromium[:i], "a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 2", 1) + chromium[i:] + video
	// Chromium's audio with G.711 only.
	pcmu := strings.Replace(chromium, "m=audio 50000 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126", "m=audio 50000 UDP/TLS/RTP/SAVPF 0 8", 1)
	// Firefox's video with H.264 packetization-mode 0 only.
	mode0 := strings.Replace(fixture(t, "firefox.sdp"), "m=video 51000 UDP/TLS/RTP/SAVPF 120 124 121 125 126 127 97 98 123 122 119", "m=video 51000 UDP/TLS/RTP/SAVPF 97 98", 1)

	cases := []struct {
		name       string
		offer      string
		rejected   Rejection
		reasonHas  string
		takenMID   string
		takenCodec string
	}{
		{"vp8 only", vp8Only, Rejection{MID: "0", Kind: "video"}, "(offered: VP8)", "1", "opus"},
		{"second video", twoVideos, Rejection{MID: "2", Kind: "video"}, "one video track; mid 1", "1", "H264"},
		{"g711 audio", pcmu, Rejection{MID: "0", Kind: "audio"}, "no Opus offered (offered: PCMU, PCMA)", "1", "H264"},
		{"h264 mode 0", mode0, Rejection{MID: "1", Kind: "video"}, "H264 packetization-mode=0", "0", "opus"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			om, sd, err := answerOffer(t, c.offer)
			if err != nil {
				t.Fatalf("not answered: %v", err)
			}
			if len(om.Rejected) != 1 {
				t.Fatalf("rejected %v, want one", om.Rejected)
			}
			r := om.Rejected[0]
			if r.MID != c.rejected.MID || r.Kind != c.rejected.Kind || !strings.Contains(r.Reason, c.reasonHas) {
				t.Errorf("rejected %+v, want mid %s %s with %q in the reason", r, c.rejected.MID, c.rejected.Kind, c.reasonHas)
			}
			var sawTaken, sawRejected bool
			for _, a := range answerSections(sd) {
				switch a.mid {
				case c.rejected.MID:
					sawRejected = true
					if a.port != 0 {
						t.Errorf("rejected mid %s answered on port %d", a.mid, a.port)
					}
				case c.takenMID:
					sawTaken = true
					if a.port == 0 || len(a.codecs) == 0 || !strings.HasPrefix(a.codecs[0], c.takenCodec) {
						t.Errorf("mid %s answered port %d codecs %v, want %s", a.mid, a.port, a.codecs, c.takenCodec)
					}
				}
			}
			if !sawTaken || !sawRejected {
				t.Errorf("answer lacks mid %s or %s: %+v", c.takenMID, c.rejected.MID, answerSections(sd))
			}
			if slices.Contains(strings.Fields(bundle(sd)), c.rejected.MID) {
				t.Errorf("rejected mid %s is in the answer's group %q", c.rejected.MID, bundle(sd))
			}
			// The answerer-tagged section (the group's first) carries the
			// candidates, wherever pion put them.
			group := strings.Fields(bundle(sd))
			if len(group) < 2 {
				t.Fatalf("answer's group %q", bundle(sd))
			}
			for _, md := range sd.MediaDescriptions {
				if mid, _ := md.Attribute(sdp.AttrKeyMID); mid == group[1] && !hasAttr(md, "candidate") {
					t.Errorf("tagged mid %s has no candidates", mid)
				}
			}
		})
	}

	// Nothing usable: a 422 naming what was offered.
	noneUsable := regexp.MustCompile(`(m=audio \d+ UDP/TLS/RTP/SAVPF) 96 0 8`).ReplaceAllString(vp8Only, "$1 0 8")
	_, err := InspectOffer(noneUsable)
	if e := apierr.As(err); e.Code != apierr.CodeUnsupportedCodec || !strings.Contains(e.Message, "VP8, rtx, PCMU, PCMA") {
		t.Errorf("nothing usable: %v", err)
	}
}

// TestAcceptableH264 is the profile table, checked against what pion
// answers: an fmtp InspectOffer takes gets an H.264 answer, one it does
// not is rejected.
func TestAcceptableH264(t *testing.T) {
	cases := []struct {
		fmtp string
		ok   bool
	}{
		{"packetization-mode=1", true}, // GStreamer default caps: 42000a
		{"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", true},
		{"packetization-mode=1;profile-level-id=42000a", true},
		{"packetization-mode=1;profile-level-id=420034", true},  // baseline 5.2
		{"packetization-mode=1;profile-level-id=42c015", true},  // x264 constrained baseline 2.1
		{"packetization-mode=1;profile-level-id=42E034", true},  // upper-case hex
		{"packetization-mode=1;profile-level-id=4d4028", true},  // main, constraint_set1, 4.0
		{"packetization-mode=1;profile-level-id=4d0033", true},  // main 5.1
		{"packetization-mode=1;profile-level-id=640c1f", true},  // constrained high
		{"packetization-mode=1;profile-level-id=640034", true},  // high 5.2
		{"packetization-mode=0;profile-level-id=42e01f", false}, // single NAL only
		{"profile-level-id=42e01f", false},                      // mode 0 by default
		{"packetization-mode=2;profile-level-id=42e01f", false},
		{"packetization-mode=1;profile-level-id=f4001f", false}, // high 4:4:4
		{"packetization-mode=1;profile-level-id=6e001f", false}, // high 10
		{"packetization-mode=1;profile-level-id=58001f", false}, // extended
		{"packetization-mode=1;profile-level-id=42e0", false},
		{"packetization-mode=1;profile-level-id=zzzzzz", false},
	}
	base := fixture(t, "obs-whip.sdp")
	for _, c := range cases {
		t.Run(c.fmtp, func(t *testing.T) {
			t.Parallel()
			if _, ok := acceptableH264(c.fmtp); ok != c.ok {
				t.Fatalf("acceptableH264 = %v, want %v", ok, c.ok)
			}
			offer := strings.Replace(base, "a=fmtp:96 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1", "a=fmtp:96 "+c.fmtp, 1)
			om, sd, err := answerOffer(t, offer)
			if err != nil {
				t.Fatal(err)
			}
			if om.Video != c.ok {
				t.Errorf("InspectOffer video = %v, want %v", om.Video, c.ok)
			}
			v := answerSections(sd)[1]
			if c.ok && (v.port == 0 || len(v.codecs) != 1 || !strings.HasPrefix(v.codecs[0], "H264")) {
				t.Errorf("pion answered video port %d %v, want H.264", v.port, v.codecs)
			}
			if !c.ok && v.port != 0 {
				t.Errorf("pion answered video port %d %v, want it rejected", v.port, v.codecs)
			}
		})
	}
}

// TestInspectOfferBounds: mids are echoed in the API, so they are checked.
func TestInspectOfferBounds(t *testing.T) {
	obs := fixture(t, "obs-whip.sdp")
	for _, bad := range []string{
		strings.Replace(obs, "a=mid:1", "a=mid:"+strings.Repeat("x", 40), 1),
		strings.Replace(obs, "a=mid:1", `a=mid:"1"`, 1),
		strings.Replace(obs, "a=mid:1\r\n", "", 1),
		strings.Replace(obs, "a=group:BUNDLE 0 1", "a=group:BUNDLE 7 0 1", 1),
	} {
		_, err := InspectOffer(bad)
		var e *apierr.Error
		if !errors.As(err, &e) || e.Code != apierr.CodeInvalidSDP {
			t.Errorf("offer with a bad mid: %v, want INVALID_SDP", err)
		}
	}
	many := obs + strings.Repeat(obs[strings.Index(obs, "m=video"):], MaxMediaSections)
	if _, err := InspectOffer(many); apierr.As(err).Code != apierr.CodeInvalidSDP {
		t.Errorf("offer with %d sections: %v", MaxMediaSections+2, err)
	}
}
