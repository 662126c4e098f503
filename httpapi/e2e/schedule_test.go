package e2e

import (
	"flag"
	"testing"
)

// How the tests share the machine.
//
// The tests mostly wait on real time (media sent at its own pace, ingests,
// timeouts): one at a time, the suite keeps a fifth of a 2-core machine
// busy. So they run in parallel, but not all at once. Measured alone with
// -race, a few keep about half a core busy for their whole run (AAC
// encoders and ffmpeg under the race detector, Chromium), and three or
// four of those together starve the media paths they check: audio falls
// behind the video, RTCP reports come late. So:
//
//   - The heavy tests take turns in one lane, the light ones in another:
//     at most two tests run at a time.
//   - Tests that measure wall-clock latency or A/V sync (TestAudioLipSync,
//     a minute long: beside the others the race-instrumented audio path
//     fell behind by up to 2 s, and its first beeps moved by 9 ms), or
//     count the process's goroutines, do not call t.Parallel: they run
//     alone, before the parallel ones start.
//
// With -parallel given on the command line, it alone limits the parallel
// tests and the lanes are off.
//
// The lanes assume this package has the machine: go test ./... runs two
// packages at a time, and beside transmux/aaclc's race-instrumented encoding
// the AAC encoders here fall behind. scripts/test.sh runs it on its own.

// testLoad says which lane a parallel test runs in.
type testLoad int

const (
	light testLoad = iota // under ~0.35 of a core while it runs
	heavy                 // ~0.4 to 0.6 of a core for its whole run
)

// lanes hold a slot per running test of their load; nil when -parallel was
// given.
var lanes map[testLoad]chan struct{}

// setUpSchedule is called by TestMain before the tests run.
func setUpSchedule() {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if given {
		return
	}
	// Every parallel test is let go at once, to wait for its lane here:
	// -parallel's own queue has no order.
	if err := flag.Set("test.parallel", "64"); err != nil {
		panic(err)
	}
	lanes = map[testLoad]chan struct{}{light: make(chan struct{}, 1), heavy: make(chan struct{}, 1)}
}

// parallel runs t in parallel with the other tests, in its lane.
func parallel(t *testing.T, load testLoad) {
	t.Parallel()
	lane := lanes[load]
	if lane == nil {
		return
	}
	lane <- struct{}{}
	t.Cleanup(func() { <-lane }) // registered first: it runs last
}
