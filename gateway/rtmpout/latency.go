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
