package rtmpout

import (
	"math/rand/v2"
	"time"
)

// ReconnectPolicy is how a target whose ingest connection failed comes back:
// exponential backoff with jitter, given up after Window.
type ReconnectPolicy struct {
	Initial time.Duration // first delay (default 1 s)
	Max     time.Duration // delays double up to this (default 30 s)
	Window  time.Duration // give up (target failed) after this long (default 5 min)
}

// SetDefaults fills in what is unset.
func (p *ReconnectPolicy) SetDefaults() {
	if p.Initial <= 0 {
		p.Initial = time.Second
	}
	if p.Max <= 0 {
		p.Max = 30 * time.Second
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	if p.Window <= 0 {
		p.Window = 5 * time.Minute
	}
}

// delay is the wait before attempt n (from 1): Initial·2^(n-1) capped at
// Max, with ±20% jitter so targets that failed together do not return in
// lockstep.
func (p ReconnectPolicy) delay(n int) time.Duration {
	d := p.Initial
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(d) * jitter)
}
