package avsync

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// scenario simulates a publisher: audio packets every 20 ms and video frames
// at 30 fps, captured on the sender's clock. The content has audio leading
// video by 40 ms: the audio of source time s belongs with the video of
// source time s+40 ms. Sender Reports come every second per track.
type scenario struct {
	dur          time.Duration
	baseA, baseV uint32
	srFrom       time.Duration // first SR at this source time; <0: never
	jitter       time.Duration // uniform extra network delay
	delay        time.Duration // fixed network delay
	driftPPM     float64       // receiver clock runs this much faster
	videoExtra   time.Duration // extra delay of video (encoder, pacing)
	setupDelay   time.Duration // extra delay of the video of the first 100 ms (the track being set up)
	seed         uint64
}

type event struct {
	arrival time.Duration // receiver time since start
	source  time.Duration // capture time on the sender clock
	video   bool
	sr      bool
}

type result struct {
	audio, video map[time.Duration]int64 // source time -> output ms
	maxStep      float64                 // largest |Δout - Δsource| in ms after the start window
}

const leadMS = 40

func (sc scenario) run(t *testing.T) result {
	t.Helper()
	rng := rand.New(rand.NewPCG(sc.seed, 7))
	var evs []event
	recv := func(src time.Duration) time.Duration {
		d := sc.delay + time.Duration(rng.Int64N(int64(sc.jitter)+1))
		at := src + d
		return at + time.Duration(float64(at)*sc.driftPPM/1e6)
	}
	// Media reaches the Sync in order (after the reorder buffer): a
	// packet delayed by jitter holds back the ones behind it.
	var lastA, lastV time.Duration
	for s := time.Duration(0); s < sc.dur; s += 20 * time.Millisecond {
		lastA = max(lastA, recv(s))
		evs = append(evs, event{arrival: lastA, source: s})
	}
	for i := 0; ; i++ {
		s := time.Duration(i) * time.Second / 30
		if s >= sc.dur {
			break
		}
		at := recv(s) + sc.videoExtra
		if s < 100*time.Millisecond {
			at += sc.setupDelay
		}
		lastV = max(lastV, at)
		evs = append(evs, event{arrival: lastV, source: s, video: true})
	}
	if sc.srFrom >= 0 {
		for s := sc.srFrom; s < sc.dur; s += time.Second {
			evs = append(evs, event{arrival: recv(s), source: s, sr: true},
				event{arrival: recv(s+300*time.Millisecond) + sc.videoExtra, source: s + 300*time.Millisecond, sr: true, video: true})
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].arrival < evs[j].arrival })

	sy := New()
	a, v := sy.AddTrack(48000), sy.AddTrack(90000)
	rtpA := func(s time.Duration) uint32 { return sc.baseA + uint32(int64(s)*48000/int64(time.Second)) }
	rtpV := func(s time.Duration) uint32 { return sc.baseV + uint32(int64(s)*90000/int64(time.Second)) }
	// The sender's NTP clock is far from the receiver's.
	ntp := func(s time.Duration) uint64 {
		ns := uint64(3_900_000_000)*uint64(time.Second) + uint64(s)
		return (ns/uint64(time.Second))<<32 | (ns%uint64(time.Second))<<32/uint64(time.Second)
	}
	start := time.Unix(1_800_000_000, 0)
	res := result{audio: map[time.Duration]int64{}, video: map[time.Duration]int64{}}
	last := map[bool][2]int64{}
	for _, e := range evs {
		switch {
		case e.sr && e.video:
			sy.OnSenderReport(v, &rtcp.SenderReport{NTPTime: ntp(e.source), RTPTime: rtpV(e.source)})
		case e.sr:
			sy.OnSenderReport(a, &rtcp.SenderReport{NTPTime: ntp(e.source), RTPTime: rtpA(e.source)})
		default:
			var out int64
			if e.video {
				out = sy.Observe(v, rtpV(e.source), start.Add(e.arrival))
				res.video[e.source] = out
			} else {
				out = sy.Observe(a, rtpA(e.source), start.Add(e.arrival))
				res.audio[e.source] = out
			}
			if l, ok := last[e.video]; ok && e.source > StartWindow {
				step := math.Abs(float64(out-l[0]) - float64(int64(e.source)-l[1])/1e6)
				res.maxStep = max(res.maxStep, step)
			}
			last[e.video] = [2]int64{out, int64(e.source)}
		}
	}
	return res
}

// offsetErrors returns the A/V offset error in ms (output offset minus the
// 40 ms of the content) for events from `from` on.
func (r result) offsetErrors(from time.Duration) (minErr, maxErr float64) {
	minErr, maxErr = math.Inf(1), math.Inf(-1)
	for s, outA := range r.audio {
		if s < from {
			continue
		}
		// A video frame exactly 40 ms + k*100 ms later exists on both grids
		// every 100 ms; compare the content offset to the output offset.
		sv := s + leadMS*time.Millisecond
		outV, ok := r.video[sv]
		if !ok {
			continue
		}
		e := float64(outV-outA) - leadMS
		minErr, maxErr = min(minErr, e), max(maxErr, e)
	}
	return
}

func TestWithSenderReports(t *testing.T) {
	for _, sc := range []scenario{
		{dur: time.Minute, baseA: 1234567, baseV: 4000000000, srFrom: 0, delay: 30 * time.Millisecond, jitter: 30 * time.Millisecond, seed: 1},
		// Both RTP clocks wrap at 2^32 a few seconds in.
		{dur: time.Minute, baseA: math.MaxUint32 - 3*48000, baseV: math.MaxUint32 - 5*90000, srFrom: 0, delay: 80 * time.Millisecond, jitter: 50 * time.Millisecond, seed: 2},
	} {
		r := sc.run(t)
		lo, hi := r.offsetErrors(10 * time.Second)
		t.Logf("base %d/%d: A/V offset error %+.0f..%+.0f ms, largest step %.2f ms", sc.baseA, sc.baseV, lo, hi, r.maxStep)
		if lo < -1 || hi > 1 {
			t.Errorf("A/V offset error %+.0f..%+.0f ms with SRs, want within ±1", lo, hi)
		}
		if r.maxStep > 2 {
			t.Errorf("output stepped %.2f ms off the media clock", r.maxStep)
		}
	}
}

func TestArrivalOnly(t *testing.T) {
	r := scenario{dur: time.Minute, baseA: 99, baseV: 3_000_000_000, srFrom: -1,
		delay: 40 * time.Millisecond, jitter: 40 * time.Millisecond, seed: 3}.run(t)
	lo, hi := r.offsetErrors(0)
	t.Logf("no SRs, 40 ms jitter: A/V offset error %+.0f..%+.0f ms, largest step %.2f ms", lo, hi, r.maxStep)
	if lo < -20 || hi > 20 {
		t.Fatalf("A/V offset error %+.0f..%+.0f ms without SRs, want within ±20", lo, hi)
	}
}

// TestStartDelayedTrack: the first video frames come 60 ms late (the
// receiver was still setting the track up) while audio flows. The mapping
// follows the least-delayed frame at once during the start window, so the
// A/V offset is right from the first SR on (1 s here) and, with arrival
// times alone, as soon as prompt frames arrive, not seconds later.
func TestStartDelayedTrack(t *testing.T) {
	for _, srFrom := range []time.Duration{time.Second, -1} {
		r := scenario{dur: 20 * time.Second, baseA: 11, baseV: 13, srFrom: srFrom,
			delay: 20 * time.Millisecond, jitter: 2 * time.Millisecond, setupDelay: 60 * time.Millisecond, seed: 6}.run(t)
		lo, hi := r.offsetErrors(200 * time.Millisecond)
		t.Logf("SRs from %v: offset error from 200 ms on %+.0f..%+.0f ms, largest step after the window %.2f ms", srFrom, lo, hi, r.maxStep)
		if lo < -3 || hi > 3 {
			t.Errorf("SRs from %v: A/V offset error %+.0f..%+.0f ms from 200 ms on, want within ±3", srFrom, lo, hi)
		}
		if r.maxStep > 2 {
			t.Errorf("output stepped %.2f ms off the media clock after the start window", r.maxStep)
		}
	}
}

// TestFirstSenderReportTakenAtOnce: video leaves the sender 35 ms later
// than its capture time says, which arrival times cannot see; the first
// SRs, 3 s in, are taken at once (FirstSRWindow): the offset is right
// from just after them, not seconds of slewing later.
func TestFirstSenderReportTakenAtOnce(t *testing.T) {
	r := scenario{dur: 10 * time.Second, baseA: 3, baseV: 9, srFrom: 3 * time.Second,
		delay: 20 * time.Millisecond, jitter: 2 * time.Millisecond, videoExtra: 35 * time.Millisecond, seed: 8}.run(t)
	lo, hi := r.offsetErrors(3500 * time.Millisecond)
	t.Logf("first SRs at 3 s: offset error from 3.5 s on %+.0f..%+.0f ms", lo, hi)
	if lo < -2 || hi > 2 {
		t.Errorf("A/V offset error %+.0f..%+.0f ms after the first SRs, want within ±2", lo, hi)
	}
}

func TestSenderReportMidStream(t *testing.T) {
	// Video is delayed 35 ms more than audio in the network, which the
	// arrival-based mapping cannot see; the SRs from 5 s on fix it.
	r := scenario{dur: 30 * time.Second, baseA: 5, baseV: 7, srFrom: 5 * time.Second,
		delay: 20 * time.Millisecond, jitter: 10 * time.Millisecond, videoExtra: 35 * time.Millisecond, seed: 4}.run(t)
	lo0, hi0 := r.offsetErrors(0)
	if hi0 < 30 {
		t.Fatalf("before the SRs the offset error should show the 35 ms extra video delay, got %+.0f..%+.0f", lo0, hi0)
	}
	lo, hi := r.offsetErrors(25 * time.Second)
	t.Logf("SR from 5 s: offset error at the end %+.0f..%+.0f ms, largest step %.2f ms", lo, hi, r.maxStep)
	if r.maxStep > 2 {
		t.Fatalf("the switch to SR time stepped %.2f ms off the media clock (more than a frame's rounding)", r.maxStep)
	}
	if lo < -1 || hi > 1 {
		t.Fatalf("after the switch the offset error is %+.0f..%+.0f ms", lo, hi)
	}
}

func TestNoDriftTenMinutes(t *testing.T) {
	for _, srFrom := range []time.Duration{0, -1} {
		sc := scenario{dur: 10 * time.Minute, baseA: 77, baseV: 1 << 31, srFrom: srFrom,
			delay: 50 * time.Millisecond, jitter: 20 * time.Millisecond, driftPPM: 50, seed: 5}
		r := sc.run(t)
		loStart, hiStart := r.offsetErrors(0)
		lo, hi := r.offsetErrors(9 * time.Minute)
		tol := 20.0
		if srFrom >= 0 {
			tol = 1
		}
		t.Logf("SRs %v: offset error first/last minute %+.0f..%+.0f / %+.0f..%+.0f ms", srFrom >= 0, loStart, hiStart, lo, hi)
		if lo < -tol || hi > tol {
			t.Errorf("SRs %v: offset error after 9 min %+.0f..%+.0f ms", srFrom >= 0, lo, hi)
		}
		// Each track follows its media clock: output time minus source
		// time stays put over the whole stream.
		for name, m := range map[string]map[time.Duration]int64{"audio": r.audio, "video": r.video} {
			d0 := float64(m[10*time.Second]) - 10_000
			d1 := float64(m[9*time.Minute+30*time.Second]) - 570_000
			if math.Abs(d1-d0) > 2 {
				t.Errorf("SRs %v: %s drifted %.0f ms in 9 min", srFrom >= 0, name, d1-d0)
			}
		}
	}
}

func TestStartsAtZeroAndMonotonic(t *testing.T) {
	sy := New()
	a := sy.AddTrack(48000)
	now := time.Now()
	if got := sy.Observe(a, 1000, now); got != 0 {
		t.Fatalf("first output %d", got)
	}
	if got := sy.Observe(a, 1000+960, now.Add(20*time.Millisecond)); got != 20 {
		t.Fatalf("second output %d", got)
	}
	// A reordered (older) packet does not move time back.
	if got := sy.Observe(a, 1000+480, now.Add(25*time.Millisecond)); got != 20 {
		t.Fatalf("older packet output %d", got)
	}
	if got := sy.Observe(Track(5), 0, now); got != 0 {
		t.Fatal("unknown track")
	}
	sy.OnSenderReport(Track(-1), &rtcp.SenderReport{})
	sy.OnSenderReport(a, nil)
	if sy.HasSenderReport(a) {
		t.Fatal("nil SR recorded")
	}
}

func BenchmarkObserve(b *testing.B) {
	sy := New()
	a := sy.AddTrack(48000)
	sy.OnSenderReport(a, &rtcp.SenderReport{NTPTime: 1 << 40, RTPTime: 0})
	now := time.Now()
	b.ReportAllocs()
	i := uint32(0)
	for b.Loop() {
		sy.Observe(a, i*960, now.Add(time.Duration(i)*20*time.Millisecond))
		i++
	}
}
