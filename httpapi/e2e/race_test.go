//go:build race

package e2e

// raceEnabled: the tests run under the race detector, which makes CPU
// dearer and keeps its shadow memory; load tests scale their bounds.
const raceEnabled = true
