#!/usr/bin/env bash
# RTMP in, relayed: CPU per stream of castbridge (a publish to its built-in
# ingest with a relay key, pushed to one target) against nginx-rtmp's
# `push` doing the same job, side by side on the same machine with the
# same publishers and the same sink.
#
#   scripts/rtmpin-bench.sh [OUT_DIR]     (default bench-results/rtmpin-<date>)
#
# Environment: N (streams per relay, default 10), DURATION (seconds measured,
# default 30), WARMUP (seconds, default 10), BITRATE (the clip's video,
# default 2500k), BASE_PORT (default 19500: BASE..BASE+4 are used),
# PROFILE (when set: a CPU profile of castbridge over DURATION, OUT/cpu.pprof).
#
# Each publisher is `ffmpeg -re -stream_loop -1 -c copy` of one 20 s clip
# (1280x720 30 fps libx264 -bf 2 -g 60, AAC 128k), the same for both relays;
# the sink is one nginx-rtmp (live on, no recording). The relays' CPU is
# their process's utime+stime over DURATION (nginx runs one process:
# master_process off). Needs ffmpeg, nginx with libnginx-mod-rtmp.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10}
DURATION=${DURATION:-30}
WARMUP=${WARMUP:-10}
BITRATE=${BITRATE:-2500k}
BASE_PORT=${BASE_PORT:-19500}
OUT=${1:-bench-results/rtmpin-$(date +%Y%m%d-%H%M%S)}
MODULE=${NGINX_RTMP_MODULE:-/usr/lib/nginx/modules/ngx_rtmp_module.so}
SINK=$BASE_PORT RELAY=$((BASE_PORT + 1)) CB_RTMP=$((BASE_PORT + 2)) CB_HTTP=$((BASE_PORT + 3))
mkdir -p "$OUT/bin" "$OUT/nginx-sink" "$OUT/nginx-relay"
OUT=$(cd "$OUT" && pwd)

PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

go build -o "$OUT/bin/castbridge" ./cmd/castbridge
if [ ! -s "$OUT/clip.flv" ]; then
	ffmpeg -nostdin -hide_banner -loglevel error -f lavfi -i testsrc2=size=1280x720:rate=30 \
		-f lavfi -i sine=frequency=440:sample_rate=48000 -t 20 -pix_fmt yuv420p -c:v libx264 -preset veryfast \
		-b:v "$BITRATE" -maxrate "$BITRATE" -bufsize "$BITRATE" -bf 2 -g 60 -c:a aac -b:a 128k -f flv "$OUT/clip.flv"
fi

# nginx_conf DIR PORT APPLICATION-BODY
nginx_conf() {
	local user=""
	[ "$(id -u)" = 0 ] && user="user root;"
	cat >"$1/nginx.conf" <<CONF
load_module $MODULE;
$user
daemon off;
master_process off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 1024; }
rtmp {
	server {
		listen 127.0.0.1:$2;
		chunk_size 4096;
		application live { live on; $3 }
		application cb { live on; }
		application ng { live on; }
	}
}
CONF
}
nginx_conf "$OUT/nginx-sink" "$SINK" ""
nginx_conf "$OUT/nginx-relay" "$RELAY" "push rtmp://127.0.0.1:$SINK/ng;"
nginx -p "$OUT/nginx-sink/" -c "$OUT/nginx-sink/nginx.conf" -e "$OUT/nginx-sink/error.log" &
PIDS+=($!)
nginx -p "$OUT/nginx-relay/" -c "$OUT/nginx-relay/nginx.conf" -e "$OUT/nginx-relay/error.log" &
NGINX_PID=$!
PIDS+=($NGINX_PID)

{
	echo "relays:"
	for i in $(seq "$N"); do
		echo "  - key: bench-key-$i"
		echo "    targets:"
		echo "      - output: rtmp://127.0.0.1:$SINK/cb/s$i"
	done
} >"$OUT/castbridge.yaml"
"$OUT/bin/castbridge" --config "$OUT/castbridge.yaml" --local-ingest "127.0.0.1:$CB_RTMP" \
	--http-addr "127.0.0.1:$CB_HTTP" --ice-udp-port 0 --ice-ips 127.0.0.1 --log-level warn \
	${PROFILE:+--pprof-addr 127.0.0.1:$((BASE_PORT + 4))} \
	>"$OUT/castbridge.log" 2>&1 &
CB_PID=$!
PIDS+=($CB_PID)
for _ in $(seq 100); do
	curl -fsS "http://127.0.0.1:$CB_HTTP/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done

for i in $(seq "$N"); do
	ffmpeg -nostdin -hide_banner -loglevel error -re -stream_loop -1 -i "$OUT/clip.flv" -c copy -f flv \
		"rtmp://127.0.0.1:$CB_RTMP/live/bench-key-$i" >>"$OUT/ffmpeg.log" 2>&1 &
	PIDS+=($!)
	ffmpeg -nostdin -hide_banner -loglevel error -re -stream_loop -1 -i "$OUT/clip.flv" -c copy -f flv \
		"rtmp://127.0.0.1:$RELAY/live/s$i" >>"$OUT/ffmpeg.log" 2>&1 &
	PIDS+=($!)
done
sleep "$WARMUP"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
cb0=$(ticks "$CB_PID") ng0=$(ticks "$NGINX_PID") t0=$(date +%s.%N)
if [ -n "${PROFILE:-}" ]; then
	curl -fsS -o "$OUT/cpu.pprof" "http://127.0.0.1:$((BASE_PORT + 4))/debug/pprof/profile?seconds=$DURATION"
else
	sleep "$DURATION"
fi
cb1=$(ticks "$CB_PID") ng1=$(ticks "$NGINX_PID") t1=$(date +%s.%N)
live=$(curl -fsS "http://127.0.0.1:$CB_HTTP/v1/streams" | grep -o '"state":"live","source":"rtmp"' | wc -l || true)
cb_rss=$(awk '/VmRSS/ {print $2}' "/proc/$CB_PID/status")
ng_rss=$(awk '/VmRSS/ {print $2}' "/proc/$NGINX_PID/status")

awk -v n="$N" -v hz="$HZ" -v t0="$t0" -v t1="$t1" -v cb0="$cb0" -v cb1="$cb1" -v ng0="$ng0" -v ng1="$ng1" \
	-v live="$live" -v warm="$WARMUP" -v cbrss="$cb_rss" -v ngrss="$ng_rss" -v host="$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
	secs = t1 - t0
	cb = (cb1 - cb0) / hz / secs * 100
	ng = (ng1 - ng0) / hz / secs * 100
	printf "| relay | streams | CPU (%% of a core) | per stream | RSS MiB |\n| --- | --- | --- | --- | --- |\n"
	printf "| castbridge (RTMP in, %d live) | %d | %.1f | %.2f | %.0f |\n", live, n, cb, cb / n, cbrss / 1024
	printf "| nginx-rtmp push | %d | %.1f | %.2f | %.0f |\n", n, ng, ng / n, ngrss / 1024
	printf "\nmeasured over %.0f s after %s s of warm-up; host: %s\n", secs, warm, host
}' | tee "$OUT/result.md"
grep -c . "$OUT/ffmpeg.log" >/dev/null 2>&1 && echo "ffmpeg said:" && head -5 "$OUT/ffmpeg.log" || true
