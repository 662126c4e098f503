#!/usr/bin/env bash
# Runs everything CI runs: installs missing system programs, vets, tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
# deps.sh installed every outside program the tests use, so a test that
# finds one missing fails rather than skips (the tests read CI).
export CI="${CI:-true}"
# playwright-core drives Chromium in the browser tests, and whip-whep is the WHIP client they
# publish with; installed from the lock file when either is missing (deps.sh installed npm).
if [ ! -d httpapi/web/test/node_modules/playwright-core ] || [ ! -d httpapi/web/test/node_modules/whip-whep ]; then
	(cd httpapi/web/test && npm ci --no-audit --no-fund --loglevel=error)
fi
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path '*/node_modules/*'))
if [ -n "$unformatted" ]; then
	echo "test.sh: gofmt would change: $unformatted" >&2
	exit 1
fi
go vet ./...
# The end-to-end tests send real media in real time and share the machine
# among themselves in lanes (httpapi/e2e/schedule_test.go), so they run on
# their own after the other packages: beside transmux/aaclc's minute of
# encoding under -race their AAC encoders fell behind.
mapfile -t pkgs < <(go list ./... | grep -v '/httpapi/e2e$')
go test -race -count=1 -timeout 20m "${pkgs[@]}"
go test -race -count=1 -timeout 20m ./httpapi/e2e

# Allocation tests (testing.AllocsPerRun) again without -race: the race
# detector makes sync.Pool drop what it is given, so gateway's
# TestFramePathAllocs skips under it, and the others count what a race build
# allocates, not what castbridge does. The tests are found in the source,
# not by name: every top-level Test function that calls AllocsPerRun, per
# package. Each must pass here, not skip.
alloc_tests=$({ grep -rl --include='*_test.go' 'testing\.AllocsPerRun(' . || true; } |
	sort | xargs -r awk '
		/^func / { name = $0; sub(/^func (\([^)]*\) )?/, "", name); sub(/[[(].*/, "", name) }
		/testing\.AllocsPerRun\(/ {
			dir = FILENAME; sub(/\/[^\/]*$/, "", dir)
			if (name !~ /^Test/) {
				printf "test.sh: %s calls AllocsPerRun in %s, not in a Test function: this script finds allocation tests by that call\n", FILENAME, name > "/dev/stderr"
				exit 1
			}
			print dir, name
		}' | sort -u)
if [ -z "$alloc_tests" ]; then
	echo "test.sh: no allocation tests found" >&2
	exit 1
fi
while read -r dir; do
	names=$(awk -v d="$dir" '$1 == d { print $2 }' <<<"$alloc_tests")
	pattern="^($(paste -sd'|' <<<"$names"))\$"
	echo "allocation tests without -race: $dir $pattern"
	out=$(go test -count=1 -timeout 5m -run "$pattern" -v "$dir" 2>&1) || {
		echo "$out"
		exit 1
	}
	for name in $names; do
		if ! grep -q -- "^--- PASS: $name " <<<"$out"; then
			echo "$out"
			echo "test.sh: $dir: $name did not pass without -race" >&2
			exit 1
		fi
	done
done < <(awk '{ print $1 }' <<<"$alloc_tests" | sort -u)

# The side-by-side benchmark's smoke form (~30 s: one pair of 2-stream
# video runs against castbridge and MediaMTX, which deps.sh built), so that
# scripts/bench.sh --vs mediamtx cannot rot.
smoke=$(mktemp -d)
if ! scripts/bench.sh --vs mediamtx --smoke "$smoke/out" >"$smoke/log" 2>&1 ||
	! grep -q '^| video | 2 | 1 | mediamtx |' "$smoke/out/vs.md"; then
	cat "$smoke/log"
	rm -rf "$smoke"
	echo "test.sh: scripts/bench.sh --vs mediamtx --smoke failed" >&2
	exit 1
fi
rm -rf "$smoke"
echo "bench.sh --vs mediamtx --smoke passed"

# Fuzz targets, each for FUZZTIME (10 s) on its own: every parser of network
# input has one (AMF0, RTMP chunks, RTP and its extensions, H.264
# depacketizing, SDP offers and trickle fragments, Icecast MP3/ADTS framing,
# the broadcast JSON body). They are found in the source like the
# allocation tests: every top-level func FuzzX(f *testing.F), per package.
# A crash fails CI; go test writes the input under the package's
# testdata/fuzz/FuzzX/, to be committed as a regression seed once fixed.
# -fuzzminimizetime 2s: a target seeded with whole recorded exchanges (the
# DTLS handshakes of dtlssrtp) otherwise spends its 10 s shrinking the first
# new inputs (60 s each by default) and runs next to nothing.
fuzztime=${FUZZTIME:-10s}
fuzz_targets=$({ grep -rl --include='*_test.go' '^func Fuzz' . || true; } |
	sort | xargs -r awk '
		/^func Fuzz/ {
			name = $0; sub(/^func /, "", name); sub(/\(.*/, "", name)
			if ($0 !~ /\(f \*testing\.F\)/) {
				printf "test.sh: %s: %s is not a fuzz target (func %s(f *testing.F)): this script runs every func Fuzz as one\n", FILENAME, name, name > "/dev/stderr"
				exit 1
			}
			dir = FILENAME; sub(/\/[^\/]*$/, "", dir)
			print dir, name
		}' | sort -u)
if [ -z "$fuzz_targets" ]; then
	echo "test.sh: no fuzz targets found" >&2
	exit 1
fi
# Go 1.26's fuzz coordinator can end a clean run with a bare "context
# deadline exceeded" failure when -fuzztime expires while a worker is mid-call
# (go.dev/issue/75804, fixed in Go 1.27). That signature, with no failing
# input written, is run once more rather than failing CI; a crash always
# writes its input ("Failing input written to ...") and fails at once.
fuzz_deadline_flake() {
	! grep -q 'Failing input written to' <<<"$1" &&
		grep -q -A1 "^--- FAIL: $2 " <<<"$1" &&
		grep -A1 "^--- FAIL: $2 " <<<"$1" | tail -1 | grep -q '^    context deadline exceeded$'
}
while read -r dir name; do
	for attempt in 1 2 3; do
		echo "fuzzing $dir $name for $fuzztime"
		if out=$(go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s "$dir" 2>&1); then
			break
		fi
		if [ "$attempt" -lt 3 ] && fuzz_deadline_flake "$out" "$name"; then
			echo "test.sh: $dir: $name ended on Go's fuzztime deadline race (go.dev/issue/75804), no failing input; running it again"
			continue
		fi
		echo "$out"
		echo "test.sh: $dir: $name failed (the input is under $dir/testdata/fuzz/$name)" >&2
		exit 1
	done
	if ! grep -q '^PASS$' <<<"$out"; then
		echo "$out"
		echo "test.sh: $dir: $name did not run" >&2
		exit 1
	fi
	grep 'execs:' <<<"$out" | tail -1
done <<<"$fuzz_targets"
