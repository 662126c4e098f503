// Package procs sizes the Go scheduler to the gateway's load: one P while
// the process uses little CPU, the runtime's default (GOMAXPROCS) above
// that.
//
// Why: the gateway's work comes in short bursts (a batch of datagrams, a
// frame to write) with the process mostly idle in between. Go's scheduler
// wakes an idle P's thread for every goroutine readied and every netpoll
// event while another P runs (golang/go#54622); the thread spins, finds
// little or nothing and sleeps again. With two CPUs and 100 video streams
// those wake-ups and sleeps cost a fifth of the gateway's CPU (measured:
// GOMAXPROCS=1 used 19% less per stream). One P is enough while the
// process needs well under one core; past that the default gives it every
// CPU back.
package procs

import (
	"context"
	"log/slog"
	"runtime"
	"time"
)

// Defaults of Config.
const (
	DefaultEvery = 250 * time.Millisecond
	DefaultLow   = 0.4 // cores
	DefaultHigh  = 0.6 // cores
	DefaultCalm  = 8   // samples: 2 s at DefaultEvery
)

// Config is how Run decides. The zero value takes the defaults.
type Config struct {
	// Every is how often the process's CPU use is sampled.
	Every time.Duration
	// Low and High are CPU use in cores: below Low for Calm samples in a
	// row the scheduler gets one P; one sample above High gives it the
	// runtime's default again. The gap keeps it from flapping: the same
	// work costs more with more Ps.
	Low, High float64
	Calm      int
	Logger    *slog.Logger
}

func (c *Config) defaults() {
	if c.Every <= 0 {
		c.Every = DefaultEvery
	}
	if c.Low <= 0 {
		c.Low = DefaultLow
	}
	if c.High <= 0 {
		c.High = DefaultHigh
	}
	if c.High <= c.Low {
		c.High = c.Low * 1.5
	}
	if c.Calm <= 0 {
		c.Calm = DefaultCalm
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// runtimeProcs is the Go runtime as a Sizer changes it.
type runtimeProcs interface {
	one()     // GOMAXPROCS 1
	restore() // the runtime's default (which follows CPU limits again)
}

type goRuntime struct{}

func (goRuntime) one()     { runtime.GOMAXPROCS(1) }
func (goRuntime) restore() { runtime.SetDefaultGOMAXPROCS() }

// Sizer is the decision, fed one sample at a time.
type Sizer struct {
	cfg     Config
	rt      runtimeProcs
	single  bool // GOMAXPROCS is 1, set by the sizer
	calm    int  // samples in a row under Low
	lastCPU time.Duration
	lastAt  time.Time
}

func newSizer(cfg Config, rt runtimeProcs) *Sizer {
	cfg.defaults()
	return &Sizer{cfg: cfg, rt: rt}
}

// sample takes the process's CPU time so far at now, and changes the
// scheduler when the load says so.
func (s *Sizer) sample(now time.Time, cpu time.Duration) {
	if s.lastAt.IsZero() {
		s.lastAt, s.lastCPU = now, cpu
		return
	}
	wall := now.Sub(s.lastAt)
	if wall <= 0 {
		return
	}
	cores := float64(cpu-s.lastCPU) / float64(wall)
	s.lastAt, s.lastCPU = now, cpu
	switch {
	case s.single && cores > s.cfg.High:
		s.rt.restore()
		s.single, s.calm = false, 0
		s.cfg.Logger.Debug("scheduler: the runtime's default procs", "cores", cores)
	case !s.single && cores < s.cfg.Low:
		if s.calm++; s.calm >= s.cfg.Calm {
			s.rt.one()
			s.single, s.calm = true, 0
			s.cfg.Logger.Debug("scheduler: one proc", "cores", cores)
		}
	case !s.single:
		s.calm = 0
	}
}

// Run samples the process's CPU use every cfg.Every until ctx ends, then
// gives the runtime its default back. It returns at once where the
// runtime's default is one P already or the system cannot say the
// process's CPU time.
func Run(ctx context.Context, cfg Config) {
	if runtime.GOMAXPROCS(0) <= 1 {
		return
	}
	if _, ok := processCPU(); !ok {
		return
	}
	s := newSizer(cfg, goRuntime{})
	defer func() {
		if s.single {
			s.rt.restore()
		}
	}()
	t := time.NewTicker(s.cfg.Every)
	defer t.Stop()
	for {
		cpu, _ := processCPU()
		s.sample(time.Now(), cpu)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
