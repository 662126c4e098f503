#!/usr/bin/env bash
# Performance baseline: builds castbridge and loadgen, runs the gateway as
# its own process, sweeps stream counts with loadgen (video passthrough,
# then video + Opus transcoded to AAC), and runs the Go benchmarks of the
# per-packet and per-frame paths and the UDP+SRTP floor.
#
#   scripts/bench.sh [OUT_DIR]        (default bench-results/<date>)
#
# Environment: SWEEP (default 1,10,50,100), AUDIO_SWEEP (default 1,10,50,100;
# empty skips the AAC sweep), DURATION (hold, default 30s), RAMP (default
# 5s), BENCHTIME (go test -benchtime, default 1s), HTTP_PORT (18080),
# ICE_PORT (18189), SINK_ADDR (127.0.0.1:19400).
#
# Results: OUT/video.{md,json,svg}, OUT/aac.{md,json,svg}, OUT/gobench.txt,
# OUT/gateway-*.log, OUT/host.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-bench-results/$(date +%Y%m%d-%H%M%S)}
SWEEP=${SWEEP:-1,10,50,100}
AUDIO_SWEEP=${AUDIO_SWEEP-1,10,50,100}
DURATION=${DURATION:-30s}
RAMP=${RAMP:-5s}
BENCHTIME=${BENCHTIME:-1s}
HTTP_PORT=${HTTP_PORT:-18080}
ICE_PORT=${ICE_PORT:-18189}
SINK_ADDR=${SINK_ADDR:-127.0.0.1:19400}
mkdir -p "$OUT/bin"

{
	echo "date: $(date -u +%FT%TZ)"
	echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
	echo "go: $(go version)"
	echo "cpus: $(nproc)"
	grep -m1 'model name' /proc/cpuinfo || true
	echo "load average: $(cat /proc/loadavg)"
} | tee "$OUT/host.txt"

go build -o "$OUT/bin/castbridge" ./cmd/castbridge
go build -o "$OUT/bin/loadgen" ./cmd/loadgen

GW_PID=
stop_gateway() {
	if [ -n "$GW_PID" ]; then
		kill "$GW_PID" 2>/dev/null || true
		wait "$GW_PID" 2>/dev/null || true
		GW_PID=
	fi
}
trap stop_gateway EXIT

# start_gateway NAME: a fresh gateway per sweep, so that each starts from an
# idle process (RSS baseline, no leftovers of the previous sweep).
start_gateway() {
	"$OUT/bin/castbridge" --local-ingest= --http-addr "127.0.0.1:$HTTP_PORT" \
		--ice-udp-port "$ICE_PORT" --ice-ips 127.0.0.1 --log-level warn \
		>"$OUT/gateway-$1.log" 2>&1 &
	GW_PID=$!
	for _ in $(seq 100); do
		if curl -fsS "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	echo "castbridge did not come up; see $OUT/gateway-$1.log" >&2
	exit 1
}

# sweep NAME COUNTS LOADGEN-FLAGS...
sweep() {
	local name=$1 counts=$2
	shift 2
	start_gateway "$name"
	"$OUT/bin/loadgen" --target "http://127.0.0.1:$HTTP_PORT" --gateway-pid "$GW_PID" \
		--sink-addr "$SINK_ADDR" --sweep "$counts" --duration "$DURATION" --ramp "$RAMP" \
		--json "$OUT/$name.json" --plot "$OUT/$name.svg" "$@" | tee "$OUT/$name.md"
	stop_gateway
}

# Every target carries audio; its default is AAC, which for a video-only
# publisher is encoded silence. The video sweep therefore asks for
# audiocodec opus: the silence is then passed through as Opus packets and
# no encoder runs, so the sweep measures the video passthrough path alone.
# The audio sweep publishes Opus and transcodes it to AAC; its cost per
# stream less the video sweep's is the audio path's.
echo "== sweep $SWEEP: video passthrough (no publisher audio; Opus silence passed through, no encoder)"
sweep video "$SWEEP" --audio none --audio-codec opus
if [ -n "$AUDIO_SWEEP" ]; then
	echo "== sweep $AUDIO_SWEEP: video passthrough + Opus decoded and encoded to AAC"
	sweep aac "$AUDIO_SWEEP" --audio-codec aac
fi

echo "== Go benchmarks"
go test -run XXX -bench . -benchmem -benchtime "$BENCHTIME" ./transmux/... ./gateway/ ./cmd/loadgen/srtpfloor | tee "$OUT/gobench.txt"
echo "results in $OUT"
