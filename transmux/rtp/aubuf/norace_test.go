//go:build !race

package aubuf

const raceEnabled = false
