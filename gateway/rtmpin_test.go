package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/gateway/outpolicy"
	"github.com/castbridge/castbridge/gateway/rtmpout"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/rtmp/ingest"
)

// An SPS/PPS pair of a 1280x720 baseline stream (the e2e clip's).
var (
	testSPS, _ = hex.DecodeString("6742c01fd9005005bb0110000003001000000303c0f1832480")
	testPPS, _ = hex.DecodeString("68cb8cb2")
)

func newTestRTMPStream(t *testing.T, resume time.Duration) (*Manager, *Stream) {
	t.Helper()
	m := &Manager{cfg: Config{RTMPResume: resume, CloseTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)},
		log: slog.New(slog.DiscardHandler), frames: media.NewFramePool(), streams: map[string]*Stream{}, rtmpIn: map[int]*Stream{}}
	s := newRTMPStream(m, "st_test", "rtmp", 0)
	m.streams[s.id] = s
	m.rtmpIn[0] = s
	t.Cleanup(s.Close)
	return m, s
}

// avcFrame is a legacy AVC NALU tag body with composition time cts.
func avcFrame(key bool, cts int32, payload byte) []byte {
	b := byte(0x27)
	if key {
		b = 0x17
	}
	body := []byte{b, 1, byte(cts >> 16), byte(cts >> 8), byte(cts)}
	body = binary.BigEndian.AppendUint32(body, 2)
	return append(body, 0x65, payload)
}

func send(t *testing.T, p ingest.Sink, typ uint8, ts uint32, body []byte) {
	t.Helper()
	if err := p.Message(ingest.Message{Type: typ, Timestamp: ts, Body: body}); err != nil {
		t.Fatalf("message at %d: %v", ts, err)
	}
}

// TestRTMPSourceResume: a publisher's frames wait for its sequence header
// and keyframe; after a disconnect the stream waits, a new publish of the
// key continues it with the timeline moved on by the time away (its clock
// restarted at 0), and frames after the resume wait for a keyframe again.
func TestRTMPSourceResume(t *testing.T) {
	_, s := newTestRTMPStream(t, time.Minute)
	r := s.rtmp
	p1 := r.firstPublish()
	seq, err := flv.AppendAVCSequenceHeader(nil, testSPS, testPPS)
	if err != nil {
		t.Fatal(err)
	}
	send(t, p1, flv.TagVideo, 1000, avcFrame(true, 0, 1)) // before any sequence header: dropped
	send(t, p1, flv.TagVideo, 1000, seq)
	send(t, p1, flv.TagVideo, 1033, avcFrame(false, 66, 2)) // before the first keyframe: passed on (targets start on a keyframe), not cached
	send(t, p1, flv.TagVideo, 1066, avcFrame(true, 66, 3))
	send(t, p1, flv.TagVideo, 1100, avcFrame(false, 0, 4))
	ps := r.VideoParams()
	if ps == nil || ps.Width != 1280 || ps.Height != 720 || string(ps.SeqHeader) != string(seq) {
		t.Fatalf("params %+v", ps)
	}
	if got := r.LastMillis(); got != 100 {
		t.Errorf("stream time %d after publisher time 1100 with its first message at 1000, want 100", got)
	}
	if n := len(r.gop); n != 2 || !r.gop[0].Keyframe || r.gop[0].TS != 66 || string(r.gop[0].Body) != string(avcFrame(true, 66, 3)) {
		t.Errorf("GOP cache: %d frames, first %+v", n, r.gop)
	}
	if s.State() != StateConnected {
		t.Errorf("state %s while publishing", s.State())
	}

	p1.End("disconnect")
	if s.State() != StateConnecting {
		t.Errorf("state %s while the publisher is away", s.State())
	}
	time.Sleep(200 * time.Millisecond)
	p2, err := r.resumeWith()
	if err != nil || p2 == nil {
		t.Fatalf("resume: %v %v", p2, err)
	}
	if _, err := r.resumeWith(); err == nil || !strings.Contains(err.Error(), "BadName") {
		t.Errorf("a second publisher while one is on: %v", err)
	}
	send(t, p2, flv.TagVideo, 0, seq)
	send(t, p2, flv.TagVideo, 0, avcFrame(false, 0, 5)) // after the resume, before a keyframe: dropped
	send(t, p2, flv.TagVideo, 33, avcFrame(true, 0, 6))
	if ps2 := r.VideoParams(); ps2 != ps {
		t.Error("the same sequence header again made new parameters: targets would resend it")
	}
	if len(r.gop) != 1 || string(r.gop[0].Body) != string(avcFrame(true, 0, 6)) {
		t.Fatalf("after the resume the GOP cache holds %d frames", len(r.gop))
	}
	// The timeline: 100 ms, then about 200 ms away, then 33 ms.
	if ts := r.gop[0].TS; ts < 100+200+33 || ts > 100+400+33 {
		t.Errorf("first keyframe after the resume at stream time %d, want about 333", ts)
	}
	if d := r.dropped.Load(); d != 2 {
		t.Errorf("%d video tags dropped, want 2 (before the sequence header, before the keyframe after the resume)", d)
	}
}

// TestRTMPSourceEnds: an unpublish ends the stream at once, a disconnect
// after the resume window, and a closed stream's publisher is cut off.
func TestRTMPSourceEnds(t *testing.T) {
	_, s := newTestRTMPStream(t, 100*time.Millisecond)
	p := s.rtmp.firstPublish()
	p.End("disconnect")
	select {
	case <-s.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("the stream outlived its resume window")
	}
	if err := p.Message(ingest.Message{Type: flv.TagAudio, Body: []byte{0xaf, 1, 0}}); err == nil {
		t.Error("a closed stream took a message")
	}

	_, s2 := newTestRTMPStream(t, time.Minute)
	s2.rtmp.firstPublish().End("FCUnpublish")
	select {
	case <-s2.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("an unpublish did not end the stream")
	}
}

// TestRTMPSourceGOPWarning: keyframes over 4 s apart get one warning
// event, and the interval shows in the stats.
func TestRTMPSourceGOPWarning(t *testing.T) {
	_, s := newTestRTMPStream(t, time.Minute)
	sub := s.Subscribe(0)
	defer sub.Close()
	p := s.rtmp.firstPublish()
	seq, _ := flv.AppendAVCSequenceHeader(nil, testSPS, testPPS)
	send(t, p, flv.TagVideo, 0, seq)
	for i, ts := range []uint32{0, 2000, 7000, 12000, 14000} {
		send(t, p, flv.TagVideo, ts, avcFrame(true, 0, byte(i)))
	}
	var st Stats
	s.rtmp.stats(&st, time.Now())
	if st.Inbound.Video == nil || st.Inbound.Video.KeyframeIntervalMs != 2000 || st.Inbound.Video.Keyframes != 5 {
		t.Errorf("stats %+v", st.Inbound.Video)
	}
	var warnings []string
	for len(warnings) < 2 {
		select {
		case ev := <-sub.C:
			if ev.Name == "PublisherKeyframeInterval" {
				warnings = append(warnings, string(ev.Data))
			}
			continue
		case <-time.After(200 * time.Millisecond):
		}
		break
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], `"intervalMs":5000`) || !strings.Contains(warnings[0], `"limitMs":4000`) {
		t.Errorf("warnings %v, want one of 5000 ms", warnings)
	}
}

// TestPublisherMeta: the publisher's onMetaData is bounded, keeps numbers,
// strings and booleans, drops the file's duration and size, and the
// client's values win.
func TestPublisherMeta(t *testing.T) {
	_, s := newTestRTMPStream(t, time.Minute)
	vals := map[string]any{"duration": 12.0, "fileSize": 9.0, "encoder": "obs-output module", "width": 1920.0, "stereo": true,
		"nested": map[string]any{"a": 1.0}, "long": strings.Repeat("x", 300)}
	for i := range 100 {
		vals["k"+strings.Repeat("y", i%5)+string(rune('a'+i%26))+string(rune('a'+i/26))] = float64(i)
	}
	pm := publisherMeta(vals)
	s.rtmp.meta.Store(&pm)
	md := s.rtmp.metadata(map[string]any{"encoder": "mine"})
	if len(md) > maxPublisherMetaKeys+1 {
		t.Errorf("%d keys kept", len(md))
	}
	for _, k := range []string{"duration", "fileSize", "nested", "long"} {
		if _, ok := md[k]; ok {
			t.Errorf("kept %s", k)
		}
	}
	if md["encoder"] != "mine" {
		t.Errorf("encoder %v: the client's must win", md["encoder"])
	}
}

// TestStreamSource: the view says where a stream's media comes from.
func TestStreamSource(t *testing.T) {
	w := &Stream{id: "st_w", done: make(chan struct{})}
	w.src = webrtcSource{w}
	if got := w.Info().Source; got != "webrtc" {
		t.Errorf("a WebRTC stream's source is %q", got)
	}
	_, r := newTestRTMPStream(t, time.Minute)
	r.rtmp.firstPublish()
	if got := r.Info(); got.Source != "rtmp" || got.Name != "rtmp" || got.State != StateConnecting {
		t.Errorf("an RTMP stream's view before media: %+v", got)
	}
}

// TestRTMPSourceMuteSendsSilence: while an RTMP stream is muted each of the
// publisher's AAC-LC frames is replaced by a silent frame in the same format
// (the targets' audio keeps its pace); an HE-AAC publisher's frames, which
// castbridge cannot stand in for, are dropped; unmuted frames pass as sent.
func TestRTMPSourceMuteSendsSilence(t *testing.T) {
	seq, err := flv.AppendAVCSequenceHeader(nil, testSPS, testPPS)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		asc    []byte
		silent bool
	}{
		{"LC 44.1 kHz stereo", []byte{0x12, 0x10}, true},
		{"LC 48 kHz mono", []byte{0x11, 0x88}, true},
		{"HE-AAC", []byte{0x2b, 0x92, 0x08, 0x00}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, s := newTestRTMPStream(t, time.Minute)
			r := s.rtmp
			p := r.firstPublish()
			send(t, p, flv.TagAudio, 0, append([]byte{0xaf, 0}, c.asc...))
			send(t, p, flv.TagVideo, 0, seq)
			send(t, p, flv.TagVideo, 0, avcFrame(true, 0, 1)) // starts the GOP cache
			loud := []byte{0xaf, 1, 0xde, 0xad, 0xbe, 0xef}
			send(t, p, flv.TagAudio, 10, loud)
			r.setMuted(true)
			send(t, p, flv.TagAudio, 31, loud)
			r.setMuted(false)
			send(t, p, flv.TagAudio, 52, loud)
			var bodies [][]byte
			for _, f := range r.gop {
				if f.TagType == flv.TagAudio {
					bodies = append(bodies, f.Body)
				}
			}
			want := 3
			if !c.silent {
				want = 2
			}
			if len(bodies) != want {
				t.Fatalf("%d audio frames passed, want %d", len(bodies), want)
			}
			if string(bodies[0]) != string(loud) || string(bodies[len(bodies)-1]) != string(loud) {
				t.Errorf("unmuted frames changed: %x", bodies)
			}
			if !c.silent {
				return
			}
			silent := silentAAC(c.asc)
			if len(silent) == 0 || string(bodies[1][:2]) != "\xaf\x01" || string(bodies[1][2:]) != string(silent) {
				t.Errorf("muted frame %x, want af01 then the silent frame %x", bodies[1], silent)
			}
		})
	}
}

// TestSilentAACDecodesToSilence: the stand-in frame is what castbridge's
// encoder makes of digital silence, and it decodes to silence in FFmpeg.
func TestSilentAACDecodesToSilence(t *testing.T) {
	frame := silentAAC([]byte{0x12, 0x10}) // AAC-LC, 44.1 kHz, stereo
	if len(frame) == 0 {
		t.Fatal("no silent frame for AAC-LC 44.1 kHz stereo")
	}
	if silentAAC([]byte{0x12, 0x10}) == nil || silentAAC([]byte{0x13, 0x10}) != nil {
		t.Error("a silent frame for 24 kHz, which the encoder does not take")
	}
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ffmpeg is needed under CI")
		}
		t.Skip("no ffmpeg")
	}
	var adts []byte
	for range 20 {
		n := 7 + len(frame)
		// ADTS header: MPEG-4, no CRC, AAC-LC, 44.1 kHz, 2 channels.
		adts = append(adts, 0xff, 0xf1, 1<<6|4<<2, 2<<6|byte(n>>11), byte(n>>3), byte(n&7)<<5|0x1f, 0xfc)
		adts = append(adts, frame...)
	}
	cmd := exec.Command("ffmpeg", "-v", "error", "-f", "aac", "-i", "pipe:0", "-f", "s16le", "pipe:1")
	cmd.Stdin = bytes.NewReader(adts)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pcm, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffmpeg: %v: %s", err, stderr.String())
	}
	if len(pcm) < 19*1024*2*2 {
		t.Fatalf("decoded %d bytes, want 20 frames", len(pcm))
	}
	for i, b := range pcm {
		if b != 0 {
			t.Fatalf("sample byte %d is %d, want silence", i, b)
		}
	}
}

// TestRTMPSourceBroadcastMetadata: an RTMP stream's broadcast writes the
// publisher's onMetaData, merged into each target's, while the source
// delivers with its lock held. A target's offer writes on the delivering
// goroutine, so reading the publisher's values must not take that lock:
// when it did, the first keyframe's onMetaData deadlocked the publish.
func TestRTMPSourceBroadcastMetadata(t *testing.T) {
	// Not newTestRTMPStream: its cleanup closes the stream, which would
	// wait on the deadlock this test looks for instead of failing.
	cfg := Config{RTMPResume: time.Minute, Logger: slog.New(slog.DiscardHandler)}
	cfg.setDefaults()
	policy, err := outpolicy.New(outpolicy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.policy, cfg.hist = policy, newHistograms()
	m := &Manager{cfg: cfg, log: cfg.Logger, frames: media.NewFramePool(), streams: map[string]*Stream{}, rtmpIn: map[int]*Stream{}}
	s := newRTMPStream(m, "st_test", "rtmp", 0)
	m.streams[s.id], m.rtmpIn[0] = s, s
	hung := false
	defer func() {
		if !hung {
			s.Close()
		}
	}()

	var mu sync.Mutex
	var data []map[string]any
	srv, err := ingest.Listen(ingest.Config{Addr: "127.0.0.1:0", OnMessage: func(_ string, msg ingest.Message) {
		if msg.Type == flv.TagScript && msg.Handler == "onMetaData" {
			if vals, ok := msg.Values.(map[string]any); ok {
				mu.Lock()
				data = append(data, vals)
				mu.Unlock()
			}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	defer func() { cancel(); <-served }()

	p := s.rtmp.firstPublish()
	seq, err := flv.AppendAVCSequenceHeader(nil, testSPS, testPPS)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := flv.AppendDataMessage(nil, "onMetaData", map[string]any{"encoder": "obs-output module", "title": "studio"})
	if err != nil {
		t.Fatal(err)
	}
	metaMsg := ingest.Message{Type: flv.TagScript, Handler: "onMetaData", Body: meta,
		Values: map[string]any{"encoder": "obs-output module", "title": "studio"}}
	send(t, p, flv.TagAudio, 0, []byte{0xaf, 0, 0x12, 0x10}) // AAC-LC 44.1 kHz stereo
	send(t, p, flv.TagVideo, 0, seq)
	send(t, p, flv.TagVideo, 0, avcFrame(true, 0, 1))

	b, err := s.StartBroadcast(context.Background(), []rtmpout.Spec{{Output: "rtmp://" + srv.Addr().String() + "/live/meta"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if !hung {
			b.stop(context.Background())
		}
	}()

	// The publish runs on its own goroutine: a deadlock fails the test
	// rather than hanging it.
	published := make(chan error, 1)
	go func() {
		err := p.Message(metaMsg)
		for i := 1; i <= 30 && err == nil; i++ {
			ms := uint32(i * 33)
			time.Sleep(33 * time.Millisecond) // in real time, as a publisher sends: its frames find the target's writer idle
			if err = p.Message(ingest.Message{Type: flv.TagVideo, Timestamp: ms, Body: avcFrame(i%15 == 0, 0, byte(i))}); err == nil {
				err = p.Message(ingest.Message{Type: flv.TagAudio, Timestamp: ms, Body: []byte{0xaf, 1, 0x21, 0x10}})
			}
		}
		published <- err
	}()
	select {
	case err := <-published:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		hung = true // the stream cannot be closed: its goroutines stay behind
		t.Fatal("the publisher's messages did not get through in 10 s: the source's lock deadlocked with a target's write")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(data)
		var last map[string]any
		if n > 0 {
			last = data[n-1]
		}
		mu.Unlock()
		if last != nil && last["title"] == "studio" {
			if last["encoder"] != "obs-output module" || last["width"] != float64(1280) {
				t.Errorf("onMetaData %v: want the publisher's encoder and title over the target's values (width 1280)", last)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ingest got %d onMetaData, the last %v: none with the publisher's title", n, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
