package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

const gstImports = "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0'); from gi.repository import Gst, GstWebRTC; Gst.init(None); " +
	"assert all(Gst.ElementFactory.find(e) for e in ('webrtcbin', 'nicesrc', 'x264enc', 'rtph264pay', 'opusenc', 'rtpopuspay', 'videotestsrc')), 'missing elements'"

// TestGStreamerWebrtcbin: GStreamer 1.22's webrtcbin with x264enc and
// opusenc. bundle-policy max-bundle goes live through /v1/streams (the
// encoder's caps: constrained baseline 42c015, with Opus) through
// /v1/streams and WHIP, and so does the offer from default caps
// (packetization-mode=1 and no profile-level-id, RFC 6184's 42000a), video
// alone and with audio; the ingest gets AVC 320x240 at 30 fps and AAC,
// audio and video tags in timestamp order.
//
// The default-caps offer is made before the encoders have caps, so it
// declares no SSRC (no a=ssrc) and has no header extensions: with two
// bundled sections the gateway tells the streams apart by payload type
// (gateway/webrtcin/ptdemux.go); pion alone dropped both and the stream
// never went live.
//
// Through /v1 the first video tag comes ~2.2-2.7 s after the POST: ICE
// takes ~2.1 s here: libnice (regular nomination) gets no answer it takes
// to its check from the host's address to the advertised 127.0.0.1 and
// nominates the pair that works (the host's address at both ends, learnt
// as peer-reflexive) only when that check has timed out (3 tries). x264enc
// answers the PLI within ~0.3 s.
func TestGStreamerWebrtcbin(t *testing.T) {
	parallel(t, heavy)
	python := needPython(t, gstImports)
	cases := []struct {
		name string
		args []string
		liveCase
	}{
		{"v1/max-bundle", nil, liveCase{path: "v1", video: true, audio: true, width: 320, height: 240}},
		{"whip/max-bundle", nil, liveCase{path: "whip", video: true, audio: true, width: 320, height: 240}},
		{"v1/max-bundle default caps video", []string{"--default-caps", "--no-audio"}, liveCase{path: "v1", video: true, width: 320, height: 240}},
		{"whip/max-bundle default caps video", []string{"--default-caps", "--no-audio"}, liveCase{path: "whip", video: true, width: 320, height: 240}},
		{"v1/max-bundle default caps audio+video", []string{"--default-caps"}, liveCase{path: "v1", video: true, audio: true, width: 320, height: 240}},
		{"whip/max-bundle default caps audio+video", []string{"--default-caps"}, liveCase{path: "whip", video: true, audio: true, width: 320, height: 240}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			p, offer := startScript(t, python, "gst_publisher.py", append(c.args, "--seconds", "40")...)
			if strings.Contains(c.name, "default caps") && strings.Contains(offer, "profile-level-id") {
				t.Fatalf("default-caps offer has a profile-level-id: it no longer tests the default:\n%s", offer)
			}
			if strings.Contains(c.name, "default caps audio+video") && (strings.Contains(offer, "a=ssrc:") || strings.Contains(offer, "a=extmap:")) {
				t.Fatalf("default-caps offer declares SSRCs or extensions: it no longer tests demultiplexing by payload type:\n%s", offer)
			}
			goLive(t, h, p, offer, c.liveCase)
		})
	}
}

// TestGStreamerUnbundled: webrtcbin with bundle-policy balanced or none
// offers no BUNDLE group and its own ICE credentials per m-section, which
// one transport cannot serve: a 422 that says to use max-bundle, through
// /v1/streams and WHIP, never pion's error.
func TestGStreamerUnbundled(t *testing.T) {
	parallel(t, heavy)
	python := needPython(t, gstImports)
	for _, policy := range []string{"balanced", "none"} {
		t.Run(policy, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			p, offer := startScript(t, python, "gst_publisher.py", "--bundle-policy", policy, "--seconds", "30")
			defer p.stop()
			if strings.Contains(offer, "a=group:BUNDLE") {
				t.Fatalf("bundle-policy %s offered a BUNDLE group:\n%s", policy, offer)
			}
			e := h.expectError("POST", "/v1/streams", map[string]any{"sdp": offer}, http.StatusUnprocessableEntity, "UNSUPPORTED_OFFER")
			checkUnbundledMessage(t, e.Error.Message)

			req, _ := http.NewRequest("POST", h.srv.URL+"/whip", strings.NewReader(offer))
			req.Header.Set("Content-Type", "application/sdp")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(body), "UNSUPPORTED_OFFER") {
				t.Fatalf("WHIP: %d %s", resp.StatusCode, body)
			}
			checkUnbundledMessage(t, string(body))
			if n := len(h.m.Streams()); n != 0 {
				t.Errorf("%d streams left after refused offers", n)
			}
		})
	}
}

func checkUnbundledMessage(t *testing.T, msg string) {
	t.Helper()
	for _, want := range []string{"mid video0 and mid audio1", "max-bundle", "one transport"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "SetRemoteDescription") || strings.Contains(msg, "conflicting") {
		t.Errorf("message carries pion's error: %q", msg)
	}
}
