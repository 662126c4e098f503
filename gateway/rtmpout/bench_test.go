package rtmpout

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/transmux/format/mediafile"
	"github.com/castbridge/castbridge/transmux/rtmp/ingest"
)

// benchBacklog bounds each target's queue during the benchmark: the writers
// keep up with the producer instead of dropping, and the frames in flight
// (what the pool must hold) are the same in the warm-up and the timed loop.
const benchBacklog = 64

// framePathRig is a broadcast to n targets, each publishing to an
// in-process ingest that records nothing, fed with the 1280x720 clip.
type framePathRig struct {
	obs     framePathObservers
	frames  []mediafile.Frame
	ps      *media.ParamSet
	r       *rig
	srv     *ingest.Server
	stopSrv func()
	next    int // frames delivered
}

func newFramePathRig(tb testing.TB, n int) *framePathRig {
	tb.Helper()
	frames, ps := load720(tb)
	srv, err := ingest.Listen(ingest.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	r := &framePathRig{obs: newFramePathObservers(), frames: frames, ps: ps, srv: srv, stopSrv: func() { cancel(); <-served }}

	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("rtmp://%s/live/bench%d", srv.Addr(), i)
	}
	r.r = startObservedTargets(tb, slog.New(slog.DiscardHandler), r.obs.observers(), names...)
	// Open every target with its keyframe and headers, then warm the pool
	// and the buffers up.
	for range 4 * len(frames) {
		r.deliver()
		r.throttle(benchBacklog)
	}
	r.drain(tb)
	return r
}

// deliver is the video pipeline's and the broadcast's per-frame work for
// the next frame of the clip (looped; IDRs at 0 and 135 keep their
// parameter set): a pooled frame, muxed once, queued on every target.
func (r *framePathRig) deliver() {
	fr := &r.frames[r.next%len(r.frames)]
	r.r.feed(r.ps, uint32(r.next*33), fr.NALUs, fr.IDR)
	r.next++
}

// throttle waits while a target's backlog exceeds max frames, so that the
// producer never outruns the writers into dropping.
func (r *framePathRig) throttle(max int) {
	for _, t := range r.r.targets {
		for len(t.queue) > max {
			runtime.Gosched()
		}
	}
}

// drain waits until every delivered frame was written by every target.
func (r *framePathRig) drain(tb testing.TB) {
	deadline := time.Now().Add(10 * time.Second)
	for _, t := range r.r.targets {
		for t.framesSent.Load()+t.framesDropped.Load() < uint64(r.next) {
			if time.Now().After(deadline) {
				tb.Fatalf("target wrote %d of %d frames", t.framesSent.Load(), r.next)
			}
			runtime.Gosched()
		}
		if d := t.framesDropped.Load(); d != 0 {
			tb.Fatalf("target dropped %d frames", d)
		}
		if st := t.State(); st != Live {
			tb.Fatalf("target is %s", st)
		}
	}
}

func (r *framePathRig) close(tb testing.TB) {
	r.r.stop(tb)
	r.stopSrv()
}

// BenchmarkFramePath measures the steady-state path of one access unit from
// the receive goroutine (pooled frame, FLV muxing, fan-out) to its bytes on
// each target's ingest socket (writer goroutine, RTMP chunking, write).
// Allocations of every goroutine count, the ingest's included.
func BenchmarkFramePath(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("targets=%d", n), func(b *testing.B) {
			r := newFramePathRig(b, n)
			defer r.close(b)
			var bytes int
			for _, fr := range r.frames {
				for _, nalu := range fr.NALUs {
					bytes += len(nalu)
				}
			}
			b.SetBytes(int64(bytes / len(r.frames)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				r.deliver()
				r.throttle(benchBacklog)
			}
			r.drain(b)
			b.StopTimer()
		})
	}
}

// TestFramePathAllocs checks that the receive goroutine's share of the frame
// path (pooled frame, muxing, delivery to live targets, release) allocates
// nothing once warm, while the targets' writers publish to a real ingest.
func TestFramePathAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes to an ingest")
	}
	if raceEnabled() {
		// sync.Pool drops a quarter of what it is given under the race
		// detector, so frames are reallocated on purpose.
		t.Skip("allocation counts are meaningless with -race")
	}
	r := newFramePathRig(t, 3)
	defer r.close(t)
	allocs := testing.AllocsPerRun(1000, func() {
		r.deliver()
		r.throttle(benchBacklog)
	})
	r.drain(t)
	if allocs != 0 {
		t.Errorf("frame path allocates %v times per frame, want 0", allocs)
	}
	// The writers did observe every frame: the zero above includes the
	// histograms' per-frame work.
	const n = 3
	if got, want := count(t, r.obs.latency), uint64(n*r.next); got != want {
		t.Errorf("frame latency observed %d times, want %d (every frame on %d targets)", got, want, n)
	}
	if got, want := count(t, r.obs.queue), uint64(n*r.next); got != want {
		t.Errorf("queue time observed %d times, want %d", got, want)
	}
	if got := count(t, r.obs.publish); got != n {
		t.Errorf("publish time observed %d times, want %d (one connect per target)", got, n)
	}
}

// framePathObservers are real Prometheus histograms, as the gateway gives
// its targets.
type framePathObservers struct{ latency, queue, publish prometheus.Histogram }

func newFramePathObservers() framePathObservers {
	h := func(name string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Buckets: prometheus.DefBuckets})
	}
	return framePathObservers{latency: h("latency"), queue: h("queue"), publish: h("publish")}
}

func (o framePathObservers) observers() Observers {
	return Observers{FrameLatency: o.latency, QueueTime: o.queue, PublishTime: o.publish}
}

// count is how many observations h has.
func count(tb testing.TB, h prometheus.Histogram) uint64 {
	tb.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		tb.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
