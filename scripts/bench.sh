#!/usr/bin/env bash
# Performance baseline: builds castbridge and loadgen, runs the gateway as
# its own process, sweeps stream counts with loadgen (video passthrough,
# then video + Opus transcoded to AAC), and runs the Go benchmarks of the
# per-packet and per-frame paths and the UDP+SRTP floor.
#
#   scripts/bench.sh [OUT_DIR]        (default bench-results/<date>)
#   scripts/bench.sh --vs mediamtx [--smoke] [OUT_DIR]
#   scripts/bench.sh --vs pionpath [OUT_DIR]
#
# --vs pionpath: the same interleaved pairs, castbridge against castbridge
# with --srtp-fast-path=false (every packet through pion's receive chain),
# the A/B of the SRTP fast path; the AAC job runs for both.
#
# --vs mediamtx: the same loads against castbridge and MediaMTX (the version
# scripts/deps.sh pins, built by it), each server a fresh process per run,
# runs interleaved (castbridge, MediaMTX, castbridge, MediaMTX, ...), and
# prints per-pair ratios (loadgen --compare): VS_JOBS (default video,opus:
# video passthrough; video + Opus passed through) at VS_COUNTS (default
# 10,50,100) streams, VS_REPS (default 2) pairs each; castbridge's
# Opus-to-AAC at VS_AAC_COUNTS (default 10,50; SRS, the other server that
# transcodes, is not installed here); then a saturation search over
# SAT_COUNTS (default 100,150,200,250,300; empty skips) for both servers,
# each stopping at its first saturated count (a stream not live, a frame
# lost, or p99 > 50 ms). DURATION defaults to 20s here. Results:
# OUT/vs/*.json, OUT/vs.md, OUT/vs.svg, OUT/floor.txt. --smoke: one pair of
# video runs at 2 streams, 5 s hold, no AAC, saturation or floor (CI runs it
# so the script cannot rot).
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

VS= SMOKE=false
while [ $# -gt 0 ]; do
	case $1 in
	--vs)
		case ${2:-} in
		mediamtx | pionpath) ;;
		*) echo "bench.sh: --vs takes mediamtx (the other server built here) or pionpath (castbridge with --srtp-fast-path=false)" >&2; exit 2 ;;
		esac
		VS=$2
		shift 2
		;;
	--smoke) SMOKE=true; shift ;;
	-*) echo "bench.sh: unknown flag $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
if $SMOKE && [ -z "$VS" ]; then
	echo "bench.sh: --smoke goes with --vs mediamtx" >&2
	exit 2
fi
if [ -n "$VS" ]; then
	DURATION=${DURATION:-20s}
	if $SMOKE; then
		VS_JOBS=video VS_COUNTS=2 VS_REPS=1 VS_AAC_COUNTS= SAT_COUNTS= DURATION=5s RAMP=1s
	fi
fi

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
# GW_FLAGS: more flags for it.
GW_FLAGS=
start_gateway() {
	local -a more
	read -r -a more <<<"$GW_FLAGS"
	"$OUT/bin/castbridge" --local-ingest= --http-addr "127.0.0.1:$HTTP_PORT" \
		--ice-udp-port "$ICE_PORT" --ice-ips 127.0.0.1 --log-level warn "${more[@]}" \
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

# --vs mediamtx: see the header.
if [ -n "$VS" ]; then
	VS_JOBS=${VS_JOBS-video,opus}
	VS_COUNTS=${VS_COUNTS-10,50,100}
	VS_REPS=${VS_REPS:-2}
	VS_AAC_COUNTS=${VS_AAC_COUNTS-10,50}
	SAT_COUNTS=${SAT_COUNTS-100,150,200,250,300}
	MTX_HTTP_PORT=${MTX_HTTP_PORT:-18889}
	MTX_ICE_PORT=${MTX_ICE_PORT:-18190}
	OTHER=$VS
	mkdir -p "$OUT/vs"
	if [ "$VS" = mediamtx ]; then
		scripts/deps.sh mediamtx
		MEDIAMTX=${CASTBRIDGE_BIN:-$HOME/.cache/castbridge/bin}/mediamtx
		MTX_DIR=$(mktemp -d)
		MTX_PID=
		stop_mediamtx() {
			if [ -n "$MTX_PID" ]; then
				kill "$MTX_PID" 2>/dev/null || true
				wait "$MTX_PID" 2>/dev/null || true
				MTX_PID=
			fi
		}
		trap 'stop_gateway; stop_mediamtx; rm -rf "$MTX_DIR"' EXIT
		# WHIP in on the path lg<n>, forwarded natively (the path's forward:) to
		# loadgen's sink as app "live", key lg<n>: MediaMTX takes an RTMP
		# destination's stream key after '#'. Everything else MediaMTX serves is
		# off. The 4 MiB UDP read buffer is what the issue measured with (with
		# the default one MediaMTX lost frames at 100 streams); the kernel caps
		# it at net.core.rmem_max, recorded in host.txt.
		cat >"$MTX_DIR/mediamtx.yml" <<-EOF
			logLevel: warn
			api: false
			metrics: false
			pprof: false
			playback: false
			rtsp: false
			rtmp: false
			hls: false
			srt: false
			moq: false
			webrtc: true
			webrtcAddress: 127.0.0.1:$MTX_HTTP_PORT
			webrtcLocalUDPAddress: 127.0.0.1:$MTX_ICE_PORT
			webrtcIPsFromInterfaces: false
			webrtcAdditionalHosts: [127.0.0.1]
			udpReadBufferSize: 4194304
			paths:
			  "~^lg([0-9]+)\$":
			    forward:
			      - dest: rtmp://$SINK_ADDR/live#lg\$G1
		EOF
		echo "net.core.rmem_max: $(cat /proc/sys/net/core/rmem_max 2>/dev/null || echo unknown)" >>"$OUT/host.txt"
		echo "mediamtx: $("$MEDIAMTX" --help 2>&1 | grep -o 'MediaMTX v[0-9.]*' || echo unknown)" | tee -a "$OUT/host.txt"
		start_mediamtx() {
			(cd "$MTX_DIR" && exec "$MEDIAMTX" mediamtx.yml) >"$OUT/mediamtx-$1.log" 2>&1 &
			MTX_PID=$!
			for _ in $(seq 100); do
				# the WHIP endpoint answers OPTIONS once the server is up
				if curl -sS -o /dev/null -X OPTIONS "http://127.0.0.1:$MTX_HTTP_PORT/lg0/whip" 2>/dev/null; then
					return 0
				fi
				sleep 0.1
			done
			echo "mediamtx did not come up; see $OUT/mediamtx-$1.log" >&2
			exit 1
		}
	else
		stop_mediamtx() { :; }
	fi
	# job_flags JOB SERVER: loadgen's flags for the job. Both servers get the
	# same publishers; castbridge is told the targets' audio codec, MediaMTX
	# forwards what it gets.
	job_flags() {
		case $1/$2 in
		video/castbridge | video/pionpath) echo "--audio none --audio-codec opus" ;;
		video/mediamtx) echo "--audio none" ;;
		opus/castbridge | opus/pionpath) echo "--audio-codec opus" ;;
		opus/mediamtx) echo "" ;;
		aac/castbridge | aac/pionpath) echo "--audio-codec aac" ;;
		*) echo "bench.sh: no job $1 for $2" >&2; exit 2 ;;
		esac
	}
	# one_run KIND JOB N REP SERVER: one loadgen run against a fresh server;
	# its result is OUT/vs/KIND_JOB_N_REP_SERVER.json.
	one_run() {
		local kind=$1 job=$2 n=$3 rep=$4 server=$5 name="$1_$2_$3_$4_$5" pid
		local -a flags
		read -r -a flags <<<"$(job_flags "$job" "$server")"
		echo "== $name (load average $(cut -d' ' -f1-3 /proc/loadavg))"
		if [ "$server" != mediamtx ]; then
			GW_FLAGS=
			if [ "$server" = pionpath ]; then
				GW_FLAGS=--srtp-fast-path=false
			fi
			start_gateway "$name"
			pid=$GW_PID
			flags+=(--target "http://127.0.0.1:$HTTP_PORT")
		else
			start_mediamtx "$name"
			pid=$MTX_PID
			flags+=(--whip-url "http://127.0.0.1:$MTX_HTTP_PORT/lg{n}/whip")
		fi
		"$OUT/bin/loadgen" --gateway-pid "$pid" --sink-addr "$SINK_ADDR" --streams "$n" \
			--duration "$DURATION" --ramp "$RAMP" --json "$OUT/vs/$name.json" "${flags[@]}" \
			>"$OUT/vs/$name.md" 2>"$OUT/vs/$name.log" || {
			echo "loadgen failed; see $OUT/vs/$name.log" >&2
			tail -5 "$OUT/vs/$name.log" >&2
			stop_gateway
			stop_mediamtx
			return 1
		}
		local summary
		summary=$(grep '^loadgen: .* connected, ' "$OUT/vs/$name.log" | tail -1)
		echo "$summary"
		stop_gateway
		stop_mediamtx
		# the smoke run checks that the set-up works: every stream connected
		# and frames reached the sink (not the figures: CI machines are busy)
		if $SMOKE && ! [[ $summary =~ :\ $n\ connected,\ [1-9][0-9]*/ ]]; then
			echo "bench.sh: smoke: $name did not carry its $n streams; see $OUT/vs/$name.log" >&2
			return 1
		fi
	}
	run_failed() {
		if $SMOKE; then
			exit 1
		fi
	}
	for job in ${VS_JOBS//,/ }; do
		for n in ${VS_COUNTS//,/ }; do
			for rep in $(seq "$VS_REPS"); do
				# a failed run is left out of the tables (the smoke run fails)
				one_run pair "$job" "$n" "$rep" castbridge || run_failed
				one_run pair "$job" "$n" "$rep" "$OTHER" || run_failed
			done
		done
	done
	for n in ${VS_AAC_COUNTS//,/ }; do
		for rep in $(seq "$VS_REPS"); do
			one_run pair aac "$n" "$rep" castbridge || true
			if [ "$OTHER" = pionpath ]; then
				one_run pair aac "$n" "$rep" pionpath || true
			fi
		done
	done
	# saturation: interleaved by count, each server stopping at its first
	# saturated one
	if [ -n "$SAT_COUNTS" ]; then
		sat_done_castbridge=false sat_done_mediamtx=false sat_done_pionpath=false
		for n in ${SAT_COUNTS//,/ }; do
			for server in castbridge "$OTHER"; do
				done_var=sat_done_$server
				${!done_var} && continue
				one_run sat video "$n" 1 "$server" || true
				f="$OUT/vs/sat_video_${n}_1_$server.json"
				# saturated (or failed): stop this server's search
				if [ ! -s "$f" ] || "$OUT/bin/loadgen" --saturated "$f"; then
					printf -v "$done_var" true
				fi
			done
		done
	fi
	floor=0
	if ! $SMOKE; then
		echo "== floor (UDP receive + SRTP decrypt, AEAD_AES_256_GCM)"
		go test -run XXX -bench 'Floor/udp.srtp/aes256gcm$' -count 3 ./cmd/loadgen/srtpfloor | tee "$OUT/floor.txt"
		floor=$(awk '/ns\/op/ { v = $3 + 0; if (m == 0 || v < m) m = v } END { print m + 0 }' "$OUT/floor.txt")
	fi
	# The plot draws the pairs: a saturation search alone has none.
	plot=()
	if compgen -G "$OUT/vs/pair_*.json" >/dev/null; then
		plot=(--plot "$OUT/vs.svg")
	fi
	"$OUT/bin/loadgen" --compare "$OUT/vs" --floor-ns "$floor" "${plot[@]}" | tee "$OUT/vs.md"
	echo "results in $OUT"
	exit 0
fi

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
