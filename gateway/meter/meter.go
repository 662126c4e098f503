// Package meter turns growing counters into rates for the stats.
package meter

import (
	"math"
	"sync"
	"time"
)

// Rate turns a growing byte counter into bit/s, over windows of at
// least a second between samples.
type Rate struct {
	mu        sync.Mutex
	lastBytes uint64
	lastAt    time.Time
	rate      float64
}

// Bitrate takes the counter's total now and returns the rate.
func (r *Rate) Bitrate(total uint64, now time.Time) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastAt.IsZero() {
		r.lastAt, r.lastBytes = now, total
		return 0
	}
	if d := now.Sub(r.lastAt); d >= time.Second {
		r.rate = math.Round(float64(total-r.lastBytes) * 8 / d.Seconds())
		r.lastAt, r.lastBytes = now, total
	}
	return r.rate
}
