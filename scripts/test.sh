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

# Fuzz targets, each for FUZZTIME (10 s) on its own: every parser of network
# input has one (AMF0, RTMP chunks, RTP and its extensions, H.264
# depacketizing, SDP offers and trickle fragments, Icecast MP3/ADTS framing,
# the broadcast JSON body). They are found in the source like the
# allocation tests: every top-level func FuzzX(f *testing.F), per package.
# A crash fails CI; go test writes the input under the package's
# testdata/fuzz/FuzzX/, to be committed as a regression seed once fixed.
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
while read -r dir name; do
	echo "fuzzing $dir $name for $fuzztime"
	out=$(go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$dir" 2>&1) || {
		echo "$out"
		echo "test.sh: $dir: $name failed (the input is under $dir/testdata/fuzz/$name)" >&2
		exit 1
	}
	if ! grep -q '^PASS$' <<<"$out"; then
		echo "$out"
		echo "test.sh: $dir: $name did not run" >&2
		exit 1
	fi
	grep 'execs:' <<<"$out" | tail -1
done <<<"$fuzz_targets"
