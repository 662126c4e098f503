package e2e

import (
	"testing"
)

// TestAiortcPublishers: aiortc (Debian's python3-aiortc) offers a BUNDLE
// group with its own ICE credentials in each m-section, and VP8 before
// H.264. Through /v1/streams and WHIP, with audio and video, video alone
// and audio alone, the stream goes live: the view shows H.264 at the size
// sent and Opus, the ingest gets AVC at 30 fps and AAC.
//
// Not here: a rejected m-section. aiortc 1.4 cannot take an answer that
// rejects one of its sections (port 0, out of the BUNDLE group): it still
// runs ICE on that section's own transport first and never connects the
// rest. TestRejectedTrackLive covers rejection with pion as the publisher.
//
// The first video tag comes 5-6 s after the broadcast starts: aiortc 1.4's
// H.264 encoder drops keyframe requests (RTCRtpSender turns a PLI into
// force_keyframe, which H264Encoder.encode never uses; FIR it does not
// handle at all), so the gateway's PLIs, which arrive every 0.5 s, go
// unanswered and the ingest waits for libx264's own next IDR.
func TestAiortcPublishers(t *testing.T) {
	parallel(t, heavy)
	python := needPython(t, "import aiortc, av, numpy")
	cases := []struct {
		name string
		args []string
		liveCase
	}{
		{"v1/audio+video", nil, liveCase{path: "v1", video: true, audio: true, width: 352, height: 288}},
		{"whip/audio+video", []string{"--width", "320", "--height", "180"}, liveCase{path: "whip", video: true, audio: true, width: 320, height: 180}},
		{"v1/video", []string{"--no-audio"}, liveCase{path: "v1", video: true, width: 352, height: 288}},
		{"whip/video", []string{"--no-audio"}, liveCase{path: "whip", video: true, width: 352, height: 288}},
		{"v1/audio", []string{"--no-video"}, liveCase{path: "v1", audio: true}},
		{"whip/audio", []string{"--no-video"}, liveCase{path: "whip", audio: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{})
			p, offer := startScript(t, python, "aiortc_publisher.py", append(c.args, "--seconds", "40")...)
			goLive(t, h, p, offer, c.liveCase)
		})
	}
}
