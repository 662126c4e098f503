package rtmpout

import (
	"context"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/rtmp/ingest"
)

// fakeAAC is a target's AAC output.
type fakeAAC struct{}

func (fakeAAC) AudioMetadata(md map[string]any) {
	md["audiocodecid"] = float64(flv.AudioCodecAAC)
	md["audiodatarate"] = float64(128)
}

// orderRig is one target with audio publishing to an in-process ingest.
type orderRig struct {
	frames *media.FramePool
	tg     *Target
	in     *testIngest
	aacHdr *media.AudioHeader
}

func startOrderRig(t *testing.T, videoBitrate int) *orderRig {
	t.Helper()
	_, log := newTestLog(t)
	in := startIngest(t, nil)
	spec := Spec{Output: "rtmp://" + in.addr + "/live/av", VideoBitrate: videoBitrate}
	ep, err := spec.Validate()
	if err != nil {
		t.Fatal(err)
	}
	tg := New(context.Background(), "tg_av", spec, ep, fakeAAC{}, &fakeHost{}, Settings{PublishTimeout: 5 * time.Second, Logger: log})
	if e := tg.Connect(); e != nil {
		t.Fatal(e)
	}
	tg.Start()
	return &orderRig{frames: media.NewFramePool(), tg: tg, in: in,
		aacHdr: &media.AudioHeader{Body: flv.AppendAACSequenceHeader(nil, []byte{0x11, 0x90})}}
}

func (r *orderRig) audio(ts uint32) {
	f := r.frames.Get()
	f.TagType, f.TS, f.AudioHeader, f.RecvAt = flv.TagAudio, ts, r.aacHdr, time.Now()
	f.Body = flv.AppendAACRaw(f.Body, []byte{0x21, byte(ts), byte(ts >> 8)})
	r.tg.EnqueueAudio(f)
	f.Release()
}

func (r *orderRig) video(ps *media.ParamSet, ts uint32, nalus [][]byte, key bool) {
	f := r.frames.Get()
	f.TagType, f.TS, f.Keyframe, f.Params, f.RecvAt = flv.TagVideo, ts, key, ps, time.Now()
	f.Body = flv.AppendAVCNALUs(f.Body, nalus, key, 0)
	r.tg.Enqueue(f)
	f.Release()
}

func (r *orderRig) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.tg.Stop(ctx)
}

// mediaTags are the ingest's audio and video frames (no sequence headers).
func mediaTags(msgs []ingest.Message) (audio, video []ingest.Message) {
	for _, m := range msgs {
		switch {
		case m.Type == flv.TagAudio && len(m.Body) > 1 && m.Body[1] == 1:
			audio = append(audio, m)
		case m.Type == flv.TagVideo && (msgKind(m) == "key" || msgKind(m) == "inter"):
			video = append(video, m)
		}
	}
	return audio, video
}

// maxBackStep is the largest step back in timestamp from one tag to the
// next over all of a connection's tags.
func maxBackStep(msgs []ingest.Message) int64 {
	var worst int64
	for i := 1; i < len(msgs); i++ {
		if d := int64(msgs[i-1].Timestamp) - int64(msgs[i].Timestamp); d > worst {
			worst = d
		}
	}
	return worst
}

// TestTargetInterleavesAudioVideo feeds a target what a stream's goroutines
// do: 30 fps video, and AAC frames every 21.33 ms that are queued 43-63 ms
// after the video of their time (the encoder's delay plus jitter), audio
// starting before the first keyframe. The ingest must see every tag of the
// connection in non-decreasing timestamp order, every video frame and
// every audio frame from the one covering the keyframe's time on, at its
// own timestamp.
func TestTargetInterleavesAudioVideo(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	frames, ps := load720(t)
	r := startOrderRig(t, 0)
	defer r.in.close()

	// The arrival order: each event at its wall-clock time on the stream.
	type event struct {
		at    float64 // ms
		video bool
		i     int
		ts    uint32
	}
	const start = 1000 // stream ms of the first keyframe (frame 135)
	var evs []event
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 135; i < 135+90; i++ {
		ts := uint32(start + (i-135)*33)
		evs = append(evs, event{at: float64(ts) + rng.Float64()*3, video: true, i: i % len(frames), ts: ts})
	}
	nAudio := 0
	for k := 0; ; k++ {
		ts := uint32(900 + k*1024*1000/48000)
		if ts > start+89*33 {
			break
		}
		evs = append(evs, event{at: float64(ts) + 43 + rng.Float64()*20, ts: ts}) // in order, as one goroutine queues them
		nAudio++
	}
	sort.SliceStable(evs, func(a, b int) bool { return evs[a].at < evs[b].at })
	for _, e := range evs {
		if e.video {
			r.video(ps, e.ts, frames[e.i].NALUs, frames[e.i].IDR)
		} else {
			r.audio(e.ts)
		}
	}
	wantAudio := 0
	for k := 0; k < nAudio; k++ {
		if 900+(k+1)*1024*1000/48000 > start {
			wantAudio++ // from the frame that covers the keyframe's time
		}
	}
	waitFor(t, "every frame at the ingest", func() bool {
		a, v := mediaTags(r.in.messages())
		return len(v) == 90 && len(a) == wantAudio
	})
	r.stop(t)

	msgs := r.in.messages()
	if back := maxBackStep(msgs); back != 0 {
		t.Errorf("timestamps step back by up to %d ms: %v", back, kinds(msgs)[:min(40, len(msgs))])
	}
	audio, video := mediaTags(msgs)
	if len(video) != 90 || len(audio) != wantAudio {
		t.Fatalf("ingest got %d video and %d audio frames, want 90 and %d", len(video), len(audio), wantAudio)
	}
	// The connection starts with the audio frame that covers the
	// keyframe's time (985..1006 ms): audio never starts after video.
	first := 0
	for 900+(first+1)*1024*1000/48000 <= start {
		first++
	}
	base := uint32(900 + first*1024*1000/48000)
	for k, m := range video {
		if want := uint32(start+k*33) - base; m.Timestamp != want {
			t.Fatalf("video frame %d at %d ms, want %d", k, m.Timestamp, want)
		}
	}
	if audio[0].Timestamp != 0 || msgs[3].Type != flv.TagAudio || msgs[3].Timestamp != 0 {
		t.Errorf("the connection opens %v, want onMetaData, the sequence headers and the audio at 0 before the keyframe", kinds(msgs[:6]))
	}
	for k, m := range audio {
		ts := uint32(900 + (first+k)*1024*1000/48000)
		if want := ts - base; m.Timestamp != want || m.Body[3] != byte(ts) || m.Body[4] != byte(ts>>8) {
			t.Fatalf("audio frame %d at %d ms (body % x), want the frame of stream time %d at %d", k, m.Timestamp, m.Body, ts, want)
		}
	}
	if n := r.tg.framesDropped.Load(); n != 0 {
		t.Errorf("%d frames dropped", n)
	}
}

// TestTargetAudioStallReleasesVideo: when the audio stops coming (its
// goroutine stalled), video is held no longer than holdMax; audio that
// comes later than that (older than the video written since) is dropped,
// never written back in time or in a burst of one timestamp, and the audio
// after it is written where it belongs.
func TestTargetAudioStallReleasesVideo(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	frames, ps := load720(t)
	r := startOrderRig(t, 0)
	defer r.in.close()

	r.video(ps, 0, frames[135].NALUs, true)
	r.audio(0)
	sent := time.Now()
	for i := 1; i < 10; i++ {
		r.video(ps, uint32(i*33), frames[135+i].NALUs, false)
	}
	waitFor(t, "video without audio", func() bool {
		_, v := mediaTags(r.in.messages())
		return len(v) == 10
	})
	if held := time.Since(sent); held < holdMax-20*time.Millisecond {
		t.Errorf("video written %v after it was queued with no audio past it, want it held ~%v", held, holdMax)
	}
	// The stalled audio comes now: 21..315 ms; the video up to 297 ms is
	// out already.
	for k := 1; k <= 15; k++ {
		r.audio(uint32(k * 21))
	}
	r.video(ps, 330, frames[145].NALUs, false)
	waitFor(t, "the last video", func() bool {
		_, v := mediaTags(r.in.messages())
		return len(v) == 11
	})
	r.stop(t)
	msgs := r.in.messages()
	if back := maxBackStep(msgs); back != 0 {
		t.Errorf("timestamps step back by up to %d ms: %v", back, kinds(msgs))
	}
	audio, video := mediaTags(msgs)
	if len(audio) != 2 || len(video) != 11 {
		t.Fatalf("ingest got %d audio and %d video frames, want 2 (0 and 315 ms) and 11", len(audio), len(video))
	}
	if audio[0].Timestamp != 0 || audio[1].Timestamp != 315 {
		t.Errorf("audio at %d and %d ms, want 0 and 315", audio[0].Timestamp, audio[1].Timestamp)
	}
	if n := r.tg.lateAudio.Load(); n != 14 {
		t.Errorf("%d late audio frames counted, want 14", n)
	}
}

// TestTargetMetadataLikeFFmpeg: onMetaData carries what FFmpeg's FLV muxer
// writes, with the values of the stream: videodatarate from the target's
// videobitrate, else the bit rate received from the publisher.
func TestTargetMetadataLikeFFmpeg(t *testing.T) {
	frames, ps := load720(t)
	for _, tc := range []struct {
		videoBitrate int
		want         float64
	}{{0, 2500}, {1_800_000, 1800}} {
		r := startOrderRig(t, tc.videoBitrate)
		r.video(ps, 0, frames[135].NALUs, true)
		waitFor(t, "onMetaData", func() bool { return len(r.in.messages()) > 0 })
		r.stop(t)
		m := r.in.messages()[0]
		checkMetadata(t, m, 1280, 720)
		md := m.Values.(map[string]any)
		want := map[string]any{
			"duration": 0.0, "filesize": 0.0, "width": 1280.0, "height": 720.0, "videocodecid": 7.0,
			"videodatarate": tc.want, "framerate": 30.0, "encoder": encoderName,
			"audiocodecid": 10.0, "audiodatarate": 128.0,
		}
		for k, v := range want {
			if md[k] != v {
				t.Errorf("videobitrate %d: onMetaData %s = %#v, want %#v", tc.videoBitrate, k, md[k], v)
			}
		}
		r.in.close()
	}
}

// TestTargetOpusDurationReleasesVideo: an Opus frame that says how long it
// lasts (20 ms) lets the video inside it go out at once. Without the
// duration the video at 33 ms would wait for an audio frame starting at or
// after 33 ms, holdMax here where none comes.
func TestTargetOpusDurationReleasesVideo(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	frames, ps := load720(t)
	r := startOrderRig(t, 0)
	defer r.in.close()
	opusHdr := &media.AudioHeader{Body: flv.AppendOpusSequenceStart(nil, 2, 48000)}
	opus := func(ts uint32) {
		f := r.frames.Get()
		f.TagType, f.TS, f.AudioHeader, f.RecvAt, f.DurationMs = flv.TagAudio, ts, opusHdr, time.Now(), 20
		f.Body = flv.AppendOpusFrame(f.Body, []byte{0xfc, 0xff, 0xfe})
		r.tg.EnqueueAudio(f)
		f.Release()
	}
	r.video(ps, 0, frames[135].NALUs, true)
	opus(0)
	opus(20) // covers 20-40 ms
	sent := time.Now()
	r.video(ps, 33, frames[136].NALUs, false)
	waitFor(t, "the video inside the audio", func() bool {
		_, v := mediaTags(r.in.messages())
		return len(v) == 2
	})
	if held := time.Since(sent); held > holdMax/4 {
		t.Errorf("video at 33 ms written %v after it was queued, with audio up to 40 ms before it", held)
	}
	r.stop(t)
	if back := maxBackStep(r.in.messages()); back != 0 {
		t.Errorf("timestamps step back by up to %d ms", back)
	}
}

// TestQueuedBytesWithAudio: the queue's byte count comes back to zero once
// a target with audio and video has written everything. Audio frames went
// uncounted on the way in and counted on the way out, so the count drifted
// below zero with every audio frame and the queue's byte bound (see
// maxQueueBytes) stopped holding.
func TestQueuedBytesWithAudio(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	frames, ps := load720(t)
	r := startOrderRig(t, 0)
	defer r.in.close()
	for i := range 60 {
		r.video(ps, uint32(i*33), frames[i%len(frames)].NALUs, i == 0)
		r.audio(uint32(i * 33))
	}
	waitFor(t, "every frame at the ingest", func() bool {
		a, v := mediaTags(r.in.messages())
		return len(v) == 60 && len(a) >= 59
	})
	if n := r.tg.queuedBytes.Load(); n != 0 {
		t.Errorf("%d bytes counted as queued with nothing queued", n)
	}
	r.stop(t)
}
