//go:build !unix

package procs

import "time"

// processCPU: not known here; Run leaves the scheduler alone.
func processCPU() (time.Duration, bool) { return 0, false }
