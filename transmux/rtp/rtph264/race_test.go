//go:build race

package rtph264

// raceEnabled: the race detector makes sync.Pool drop a share of what it is
// given, so what the pool lends cannot be counted under it.
const raceEnabled = true
