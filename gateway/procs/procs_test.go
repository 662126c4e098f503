package procs

import (
	"context"
	"runtime"
	"testing"
	"time"
)

type fakeRuntime struct{ ones, restores int }

func (f *fakeRuntime) one()     { f.ones++ }
func (f *fakeRuntime) restore() { f.restores++ }

// TestSizer: one P after Calm samples in a row under Low, not before and
// not when a busy sample breaks the run; the default again at the first
// sample over High, not between Low and High.
func TestSizer(t *testing.T) {
	rt := &fakeRuntime{}
	s := newSizer(Config{Every: time.Second, Low: 0.4, High: 0.6, Calm: 3}, rt)
	at := time.Unix(1000, 0)
	var cpu time.Duration
	step := func(cores float64) {
		at = at.Add(time.Second)
		cpu += time.Duration(cores * float64(time.Second))
		s.sample(at, cpu)
	}
	want := func(when string, ones, restores int, single bool) {
		t.Helper()
		if rt.ones != ones || rt.restores != restores || s.single != single {
			t.Fatalf("%s: %d ones, %d restores, single %v; want %d, %d, %v", when, rt.ones, rt.restores, s.single, ones, restores, single)
		}
	}
	s.sample(at, cpu) // the first sample only sets the base
	step(0.1)
	step(0.1)
	step(0.5) // busy: the calm run starts over
	step(0.1)
	step(0.1)
	want("two calm samples after a busy one", 0, 0, false)
	step(0.1)
	want("three calm samples", 1, 0, true)
	step(0.55) // between Low and High: stays
	step(0.1)
	want("under High", 1, 0, true)
	step(0.9)
	want("over High", 1, 1, false)
	step(0.5)
	step(0.5)
	step(0.5)
	step(0.5)
	want("between Low and High with the default", 1, 1, false)
	s.sample(at, cpu) // no time passed: ignored
	want("a sample at the same time", 1, 1, false)
}

// TestConfigDefaults: the zero Config takes the defaults; a High not over
// Low is raised above it.
func TestConfigDefaults(t *testing.T) {
	var c Config
	c.defaults()
	if c.Every != DefaultEvery || c.Low != DefaultLow || c.High != DefaultHigh || c.Calm != DefaultCalm || c.Logger == nil {
		t.Errorf("defaults %+v", c)
	}
	c = Config{Low: 0.8, High: 0.5}
	c.defaults()
	if c.High <= c.Low {
		t.Errorf("High %v not above Low %v", c.High, c.Low)
	}
}

// TestRun: an idle process gets one P within a few samples, and the
// runtime's default back when Run ends.
func TestRun(t *testing.T) {
	def := runtime.GOMAXPROCS(0)
	if def <= 1 {
		t.Skip("one CPU: nothing to size")
	}
	if _, ok := processCPU(); !ok {
		t.Skip("no process CPU time on this system")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, Config{Every: 20 * time.Millisecond, Calm: 2, Low: 0.9, High: 1.5})
	}()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.GOMAXPROCS(0) != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Errorf("GOMAXPROCS %d after 5 s of an idle process, want 1", n)
	}
	cancel()
	<-done
	if n := runtime.GOMAXPROCS(0); n != def {
		t.Errorf("GOMAXPROCS %d after Run ended, want the default %d", n, def)
	}
}
