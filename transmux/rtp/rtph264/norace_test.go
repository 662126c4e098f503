//go:build !race

package rtph264

const raceEnabled = false
