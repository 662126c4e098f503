package audio

import (
	"fmt"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// ntp is the 32.32 NTP timestamp of the publisher's clock at ns.
func ntp(ns int64) uint64 {
	sec := uint64(ns / int64(time.Second))
	frac := uint64(ns%int64(time.Second)) << 32 / uint64(time.Second)
	return (sec+3_900_000_000)<<32 | frac
}

// TestSenderReportMovesAudioGapFree: publishers whose Sender Reports put
// their audio 7..47 ms later against the video than the packets' arrival
// does (audio captured earlier than sent, video encoded slower: a
// different amount each publisher and run). While the clock slews to the
// SRs, the PCM timeline moves by small resyncs; the AAC and Opus outputs'
// timestamps stay gap-free (AAC frames 1024 samples apart, Opus packets
// 20 ms apart) and, once the slew is done, the audio sits where the SRs
// say within resyncMs (AAC) and 15 ms (Opus, which moves in whole
// packets), whatever the shift.
func TestSenderReportMovesAudioGapFree(t *testing.T) {
	for _, shift := range []int64{7, 13, 23, 33, 47} {
		t.Run(fmt.Sprintf("shift=%dms", shift), func(t *testing.T) { testSRShift(t, shift) })
	}
}

func testSRShift(t *testing.T, shiftMs int64) {
	opus, _, lastWant := runSRShift(t, shiftMs, true)
	// The same with the Opus passthrough alone: no packet is decoded, and
	// its timeline is the same, packet for packet.
	alone, p, _ := runSRShift(t, shiftMs, false)
	if p.dec.Decoded != 0 {
		t.Errorf("%d packets decoded for an Opus passthrough alone", p.dec.Decoded)
	}
	if fmt.Sprint(alone) != fmt.Sprint(opus) {
		t.Errorf("the Opus passthrough's timeline differs without an AAC output: %d packets vs %d", len(alone), len(opus))
	}
	if d := int64(alone[len(alone)-1]) - lastWant; d < -15 || d > 15 {
		t.Errorf("Opus passthrough alone: %d ms off the clock at the end", d)
	}
}

// runSRShift feeds the pipeline 12 s of audio and video whose SRs shift
// the audio by shiftMs, into an Opus passthrough and, with withAAC, a
// 128 kbit/s AAC output too; it checks both timelines and returns the Opus
// packets' times.
func runSRShift(t *testing.T, shiftMs int64, withAAC bool) ([]uint32, *Pipeline, int64) {
	t.Helper()
	p, clock := newTestPipeline(true)
	if err := p.StartTrack(); err != nil {
		t.Fatal(err)
	}
	sink := &recordingSink{}
	outs := p.NewOutputs(sink)
	var aac Output
	if withAAC {
		var err error
		if aac, err = outs.AAC(128000); err != nil {
			t.Fatal(err)
		}
	}
	opus := outs.Opus()
	outs.Install()

	t0 := time.Unix(1_800_000_000, 0)
	at := func(ms int64) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	const vBase, aBase = uint32(1 << 30), uint32(3 << 30)
	var lastWant int64
	// 12 s: 30 fps video and 20 ms audio packets arriving on time; SRs
	// from 4.5 s on (after avsync.FirstSRWindow: slewed into), once a second
	// per track.
	for ms := int64(0); ms < 12000; ms++ {
		if ms%1000 == 500 && ms > 4000 { // after avsync.FirstSRWindow: slewed
			clock.OnSenderReport(true, &rtcp.SenderReport{NTPTime: ntp(ms * 1e6), RTPTime: vBase + uint32(ms*90)})
			clock.OnSenderReport(false, &rtcp.SenderReport{NTPTime: ntp((ms + shiftMs) * 1e6), RTPTime: aBase + uint32(ms*48)})
		}
		if (ms*30)%1000 < 30 {
			k := ms * 30 / 1000
			vts := vBase + uint32(k*3000)
			clock.VideoMillis(uint32(k*1000/30), vts, at(ms))
		}
		if ms%20 == 0 {
			rtpTS := aBase + uint32(ms*48)
			lastWant = clock.AudioMillis(rtpTS, at(ms))
			p.onPacket(rtpTS, opusSilence, at(ms))
		}
	}
	if p.resyncs.Load() == 0 {
		t.Fatalf("the SRs' %d ms moved the audio without a resync: the test does not test", shiftMs)
	}
	a := sink.frames(aac)
	if withAAC && len(a) < 500 {
		t.Fatalf("%d AAC frames for 12 s", len(a))
	}
	for i := 1; i < len(a); i++ {
		want := int64(a[0]) + (int64(i)*1024*1000+Rate/2)/Rate
		if d := int64(a[i]) - want; d < 0 || d > 1 {
			t.Fatalf("AAC frame %d at %d ms, %d ms off the 1024-sample grid from %d", i, a[i], d, a[0])
		}
	}
	o := sink.frames(opus)
	if len(o) < 590 {
		t.Fatalf("%d Opus packets for 12 s", len(o))
	}
	for i := 1; i < len(o); i++ {
		if d := int32(o[i] - o[i-1]); d != 20 {
			t.Fatalf("Opus packet %d at %d ms, %d ms after the one before (want 20): %v", i, o[i], d, o[max(0, i-5):min(len(o), i+5)])
		}
	}
	// Where the last packet's audio is, against where the clock wants it.
	end := p.tl.msAt(p.pos) - 20
	if d := end - lastWant; d < -resyncMs || d > resyncMs {
		t.Errorf("PCM timeline %d ms off the clock at the end", d)
	}
	if d := int64(o[len(o)-1]) - lastWant; d < -15 || d > 15 {
		t.Errorf("Opus timeline %d ms off the clock at the end", d)
	}
	t.Logf("shift %d ms, AAC %v: %d resyncs; PCM %+d ms off the clock at the end; Opus %d packets, last %+d ms off",
		shiftMs, withAAC, p.resyncs.Load(), end-lastWant, len(o), int64(o[len(o)-1])-lastWant)
	return o, p, lastWant
}
