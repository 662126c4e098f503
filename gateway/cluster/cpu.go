package cluster

import (
	"syscall"
	"time"
)

// cpuMeter turns the process's CPU time (getrusage) into the cores it used
// between two samples: the load a node reports. Only the heartbeat
// goroutine samples it.
type cpuMeter struct {
	at   time.Time
	used time.Duration
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sample returns the cores used since the last sample (0 on the first).
func (c *cpuMeter) sample(now time.Time) float64 {
	used := processCPU()
	var cores float64
	if !c.at.IsZero() && now.After(c.at) {
		cores = float64(used-c.used) / float64(now.Sub(c.at))
	}
	c.at, c.used = now, used
	return float64(int(cores*100+0.5)) / 100
}
