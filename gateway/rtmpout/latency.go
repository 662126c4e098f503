package rtmpout

import (
	"sync/atomic"
	"time"
)

// latencyHistogram records durations in 50 µs buckets up to 100 ms without
// locks or allocation, for p50/p99 of the receive-to-write latency.
type latencyHistogram struct {
	buckets [2001]atomic.Uint64 // the last bucket holds everything above 100 ms
	count   atomic.Uint64
}

const latencyBucket = 50 * time.Microsecond

func (h *latencyHistogram) observe(d time.Duration) {
	i := int(d / latencyBucket)
	if i < 0 {
		i = 0
	}
	if i >= len(h.buckets) {
		i = len(h.buckets) - 1
	}
	h.buckets[i].Add(1)
	h.count.Add(1)
}

// quantile returns the upper bound of the bucket holding quantile q (0..1).
func (h *latencyHistogram) quantile(q float64) time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n-1)) + 1
	var seen uint64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen >= rank {
			return time.Duration(i+1) * latencyBucket
		}
	}
	return time.Duration(len(h.buckets)) * latencyBucket
}

// Observer takes one measurement, in seconds. A prometheus.Histogram is
// one; rtmpout needs nothing more of the metrics library.
type Observer interface{ Observe(seconds float64) }

// Observers are where targets report their timings, shared by every target
// of the gateway (no per-target series: their number would be unbounded).
// A nil field is not reported to. Observe runs on the writer goroutine's
// per-frame path: it must not block or allocate.
type Observers struct {
	// FrameLatency: a video frame's last RTP packet received to its write
	// to the ingest done (the latency the gateway adds, as Stats report).
	FrameLatency Observer
	// QueueTime: a frame made (video: its last RTP packet; audio: encoded;
	// data: sent by the API) to the writer taking it off the target's
	// queue, for every frame a writer takes.
	QueueTime Observer
	// PublishTime: dialing the ingest to its NetStream.Publish.Start, for
	// every connection that got there (first connect and reconnects).
	PublishTime Observer
}

// observe reports d to o when o is set.
func observe(o Observer, d time.Duration) {
	if o != nil {
		o.Observe(d.Seconds())
	}
}
