package gatewaytest

import (
	"context"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v3"

	"github.com/castbridge/castbridge/transmux/format/mediafile"
)

func connectPublisher(t *testing.T, ctx context.Context, cfg PublisherConfig,
	rewrite func(answer string) string) (*Publisher, *testReceiver) {
	t.Helper()
	pub, err := NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pub.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	offer, err := pub.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rx := newTestReceiver(t)
	answer := rx.answer(t, offer)
	if rewrite != nil {
		answer = rewrite(answer)
	}
	if err := pub.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}
	return pub, rx
}

func TestPublisherToPionReceiver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub, rx := connectPublisher(t, ctx, PublisherConfig{
		VideoFile: mediafile.TestdataPath("video.h264"),
		AudioFile: mediafile.TestdataPath("audio.ogg"),
	}, nil)
	pub.Start(ctx)
	select {
	case <-pub.Connected():
	case <-ctx.Done():
		t.Fatal("publisher did not connect")
	}
	select {
	case <-rx.gotVideo:
	case <-ctx.Done():
		t.Fatal("no video received")
	}
	time.Sleep(time.Second)
	ssrc := rx.ssrc()
	rx.sendRTCP(t, &rtcp.PictureLossIndication{MediaSSRC: ssrc},
		&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: 1_500_000, SSRCs: []uint32{ssrc}})
	pub.Wait()
	time.Sleep(300 * time.Millisecond) // last packets in flight

	if rx.senderReports() == 0 {
		t.Error("no RTCP sender report received")
	}
	if pub.PLIs() != 1 {
		t.Errorf("PLIs() = %d, want 1", pub.PLIs())
	}
	if r := pub.REMBs(); len(r) != 1 || r[0] != 1_500_000 {
		t.Errorf("REMBs() = %v, want [1500000]", r)
	}
	sent := pub.Sent()
	jumps := 0
	for i, f := range sent {
		if f.Seq != i {
			t.Fatalf("sent[%d].Seq = %d", i, f.Seq)
		}
		if got, want := f.RTPTimestamp-sent[0].RTPTimestamp, uint32(i*3000); got != want {
			t.Errorf("frame %d: timestamp offset %d, want %d", i, got, want)
		}
		if f.PTS != time.Duration(i)*time.Second/30 {
			t.Errorf("frame %d: PTS %v", i, f.PTS)
		}
		if i > 0 && f.Source != sent[i-1].Source+1 {
			jumps++
			if !f.IDR || f.Source != 135 {
				t.Errorf("frame %d jumped to source %d (IDR %v), want the IDR at 135", i, f.Source, f.IDR)
			}
		}
	}
	if jumps != 1 || sent[len(sent)-1].Source != 149 {
		t.Errorf("%d jumps, last source %d; want one jump to 135 after the PLI and the material's end",
			jumps, sent[len(sent)-1].Source)
	}
	if len(sent) < 40 || len(sent) > 100 {
		t.Errorf("sent %d frames; want about 30 before the PLI plus 15 after", len(sent))
	}
	// real time: about 1/30 s between frames
	span := sent[len(sent)-1].LastPacketAt.Sub(sent[0].LastPacketAt)
	if want := sent[len(sent)-1].PTS; span < want-100*time.Millisecond || span > want+500*time.Millisecond {
		t.Errorf("frames sent over %v, want about %v", span, want)
	}

	complete, seen := rx.frames()
	if seen != len(sent) {
		t.Errorf("receiver saw %d frames, publisher sent %d", seen, len(sent))
	}
	for _, f := range sent {
		if d, ok := complete[f.RTPTimestamp]; !ok || d != f.Digest {
			t.Errorf("frame %d (source %d) not received intact", f.Seq, f.Source)
		}
	}
	if a := len(pub.SentAudio()); a < 245 || a > 255 {
		t.Errorf("sent %d audio packets, want about 250", a)
	}
	rx.mu.Lock()
	audio := rx.audio
	rx.mu.Unlock()
	if audio != len(pub.SentAudio()) {
		t.Errorf("received %d audio packets of %d", audio, len(pub.SentAudio()))
	}
}

func TestPublisherOBSLike(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub, rx := connectPublisher(t, ctx, PublisherConfig{
		VideoFile:             mediafile.TestdataPath("video.h264"),
		SeparateParameterSets: true,
		NearWrap:              true,
		MTU:                   600,
		Loop:                  true,
		NoSenderReports:       true,
	}, nil)
	// the time budget counts from the connection (DTLS may retransmit once)
	waitConnected(t, ctx, pub)
	runCtx, stop := context.WithTimeout(ctx, 2*time.Second)
	defer stop()
	pub.Start(runCtx)
	pub.Wait()
	sent := pub.Sent()
	if len(sent) < 40 {
		t.Fatalf("sent only %d frames", len(sent))
	}
	// The last packets may still be on their way on a loaded machine.
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if complete, _ := rx.frames(); len(complete) >= len(sent) {
			break
		}
	}
	wrapped := false
	for i := 1; i < len(sent); i++ {
		if sent[i].RTPTimestamp < sent[i-1].RTPTimestamp {
			wrapped = true
		}
	}
	if !wrapped {
		t.Error("RTP timestamps did not wrap")
	}
	complete, _ := rx.frames()
	for _, f := range sent {
		if d, ok := complete[f.RTPTimestamp]; !ok || d != f.Digest {
			t.Errorf("frame %d not received intact", f.Seq)
		}
	}
	if n := rx.senderReports(); n != 0 {
		t.Errorf("%d sender reports received with NoSenderReports", n)
	}
}

func TestPublisherOfferCodec(t *testing.T) {
	pub, err := NewPublisher(PublisherConfig{VideoFile: mediafile.TestdataPath("video.h264"), OfferCodec: "VP8"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	offer, err := pub.Offer(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var sd webrtc.SessionDescription
	sd.SDP = offer
	parsed, err := sd.Unmarshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range parsed.MediaDescriptions {
		for _, a := range m.Attributes {
			if a.Key == "rtpmap" && !containsFold(a.Value, "VP8/90000") {
				t.Errorf("offer has %q besides VP8", a.Value)
			}
		}
	}
	if !containsFold(offer, "127.0.0.1") {
		t.Error("offer has no loopback candidate")
	}
}

func waitConnected(t *testing.T, ctx context.Context, pub *Publisher) {
	t.Helper()
	select {
	case <-pub.Connected():
	case <-ctx.Done():
		t.Fatal("publisher did not connect")
	}
}

// TestPublisherPacing checks that a paced publisher sends a keyframe's
// first pacingBurst worth of packets at once and the rest at its pacing
// rate, and an unpaced one sends them all at once.
func TestPublisherPacing(t *testing.T) {
	frames, err := mediafile.ReadH264File(mediafile.TestdataPath("video-2500k.h264"))
	if err != nil {
		t.Fatal(err)
	}
	idrBytes := 0
	for _, n := range frames[0].NALUs {
		idrBytes += len(n)
	}
	const rate = 6_000_000
	want := time.Duration(idrBytes)*8*time.Second/rate - pacingBurst
	for _, paced := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cfg := PublisherConfig{VideoFile: mediafile.TestdataPath("video-2500k.h264")}
		if paced {
			cfg.PacingRate = rate
		}
		pub, rx := connectPublisher(t, ctx, cfg, nil)
		waitConnected(t, ctx, pub)
		runCtx, stop := context.WithTimeout(ctx, 500*time.Millisecond)
		pub.Start(runCtx)
		pub.Wait()
		stop()
		time.Sleep(200 * time.Millisecond)
		first := pub.Sent()[0]
		rx.mu.Lock()
		span := rx.videoSpan[first.RTPTimestamp]
		rx.mu.Unlock()
		cancel()
		// Only bounds a loaded machine cannot break: it lengthens a paced
		// spread (sent and received), and a burst of writes barely, but
		// the receiver's span of a burst it can stretch at will.
		sent := first.LastPacketAt.Sub(first.FirstPacketAt)
		got := span[1].Sub(span[0])
		t.Logf("paced=%v: first IDR (%d bytes) sent over %v, arrived over %v; at %d bit/s after a %v burst it takes %v", paced, idrBytes, sent, got, rate, pacingBurst, want)
		if paced && (sent < want*7/10 || got < want*7/10) {
			t.Errorf("paced IDR sent over %v, arrived over %v, want at least %v", sent, got, want*7/10)
		}
		if !paced && sent > want/2 {
			t.Errorf("unpaced IDR sent over %v, want a burst (well under %v)", sent, want)
		}
	}
}
