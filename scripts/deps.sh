#!/usr/bin/env bash
# Installs the programs castbridge's tests need that Go does not bring:
# ffmpeg (ffprobe and decoding checks, test media), faad, iproute2, Node.js
# with npm (the browser tests' driver), nginx with the RTMP
# module (nginx, libnginx-mod-rtmp), redis-server (the cluster tests),
# Chromium for the browser tests
# (chromium), and the aiortc and GStreamer webrtcbin publishers (Debian's
# python3-aiortc, gstreamer1.0-*, python3-gi with the GStreamer typelibs). With package names as arguments, only those. Idempotent: does
# nothing when all are present.
# Uses apt-get (Debian/Ubuntu); sudo only when not root. Without arguments
# it also builds MediaMTX (an RTMP ingest for the e2e tests) from its Go
# module into $CASTBRIDGE_BIN (default ~/.cache/castbridge/bin).
set -euo pipefail

# MediaMTX, built once from the Go module proxy. `go install pkg@version`
# cannot be used: the module zip lacks two generated files (internal/core/VERSION,
# internal/servers/hls/hls.min.js, which its go:generate downloads), so the
# module is copied and built with them written here: the version string, and
# an empty hls.js (the tests use RTMP and recording, never its HLS web page).
MEDIAMTX_VERSION=v1.21.0
build_mediamtx() {
	local bin=${CASTBRIDGE_BIN:-$HOME/.cache/castbridge/bin}
	if [ -x "$bin/mediamtx" ] && "$bin/mediamtx" --help 2>&1 | grep -q "$MEDIAMTX_VERSION"; then
		echo "deps: mediamtx $MEDIAMTX_VERSION present"
		return
	fi
	command -v go >/dev/null 2>&1 || { echo "deps: go is needed to build mediamtx" >&2; exit 1; }
	echo "deps: building mediamtx $MEDIAMTX_VERSION into $bin (a few minutes the first time)"
	local dir src
	dir=$(mktemp -d)
	src=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "github.com/bluenviron/mediamtx@$MEDIAMTX_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	cp -r "$src/." "$dir/mediamtx" && chmod -R u+w "$dir/mediamtx"
	printf '%s' "$MEDIAMTX_VERSION" >"$dir/mediamtx/internal/core/VERSION"
	: >"$dir/mediamtx/internal/servers/hls/hls.min.js"
	mkdir -p "$bin"
	(cd "$dir/mediamtx" && CGO_ENABLED=0 go build -o "$bin/mediamtx.tmp" . && mv "$bin/mediamtx.tmp" "$bin/mediamtx")
	rm -rf "$dir"
	echo "deps: built $bin/mediamtx"
}
# `deps.sh mediamtx` builds MediaMTX alone (scripts/bench.sh --vs mediamtx
# needs nothing else).
if [ $# -eq 1 ] && [ "$1" = mediamtx ]; then
	build_mediamtx
	exit 0
fi

# package -> check (a command in PATH, or a file, that the package provides)
declare -A checks=(
	[ffmpeg]="cmd:ffprobe"
	[faad]="cmd:faad" # second AAC decoder of the aaclc quality report (scripts/aac-quality.sh)
	[iproute2]="cmd:ip" # the network-namespace SSRF test (httpapi/e2e/netns_test.go)
	# node and npm run the browser tests' Playwright driver and WHIP client
	# (httpapi/web/test); a machine with Node.js from elsewhere keeps it.
	[nodejs]="cmd:node"
	[npm]="cmd:npm"
	[nginx]="cmd:nginx"
	[libnginx-mod-rtmp]="file:/usr/lib/nginx/modules/ngx_rtmp_module.so"
	[chromium]="file:/usr/bin/chromium" # the browser tests (httpapi/e2e/browser_test.go)
	# aiortc and GStreamer webrtcbin publishers (httpapi/e2e/aiortc_test.go, gstreamer_test.go)
	[python3-aiortc]="file:/usr/lib/python3/dist-packages/aiortc/__init__.py"
	[gstreamer1.0-plugins-bad]="file:/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstwebrtc.so"
	[gstreamer1.0-nice]="file:/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstnice.so"
	[gstreamer1.0-plugins-ugly]="file:/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstx264.so"
	[gstreamer1.0-plugins-good]="file:/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstrtp.so"
	[gstreamer1.0-plugins-base]="file:/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstopus.so"
	[python3-gi]="file:/usr/lib/python3/dist-packages/gi/__init__.py"
	[redis-server]="cmd:redis-server" # the cluster's registry (gateway/cluster, cmd/castbridge cluster_test.go)
	[gir1.2-gst-plugins-bad-1.0]="file:/usr/lib/x86_64-linux-gnu/girepository-1.0/GstWebRTC-1.0.typelib"
	[gir1.2-gst-plugins-base-1.0]="file:/usr/lib/x86_64-linux-gnu/girepository-1.0/GstSdp-1.0.typelib"
)

present() {
	local check=${checks[$1]}
	case $check in
	cmd:*) PATH="$PATH:/usr/sbin:/sbin" command -v "${check#cmd:}" >/dev/null 2>&1 ;;
	file:*) [ -e "${check#file:}" ] ;;
	*) dpkg -s "$1" >/dev/null 2>&1 ;;
	esac
}

wanted=("$@")
if [ ${#wanted[@]} -eq 0 ]; then
	wanted=(ffmpeg faad iproute2 nodejs npm nginx libnginx-mod-rtmp chromium python3-aiortc gstreamer1.0-plugins-bad gstreamer1.0-nice
		gstreamer1.0-plugins-ugly gstreamer1.0-plugins-good gstreamer1.0-plugins-base python3-gi
		gir1.2-gst-plugins-bad-1.0 gir1.2-gst-plugins-base-1.0 redis-server)
	build_mediamtx
fi
missing=()
for pkg in "${wanted[@]}"; do
	present "$pkg" || missing+=("$pkg")
done
# Node.js from another repository (NodeSource) brings its own npm and
# conflicts with Debian's: npm is installed only if still missing after
# nodejs (below).
want_npm=false
rest=()
for pkg in "${missing[@]}"; do
	if [ "$pkg" = npm ]; then want_npm=true; else rest+=("$pkg"); fi
done
missing=("${rest[@]}")
if [ ${#missing[@]} -eq 0 ] && ! $want_npm; then
	echo "deps: ${wanted[*]} present"
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: missing ${missing[*]} and no apt-get to install them" >&2
	exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	sudo=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps: installing ${missing[*]}"
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if $want_npm && ! command -v npm >/dev/null 2>&1; then
	echo "deps: installing npm"
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends npm >/dev/null
	missing+=(npm)
fi
# Debian's nginx package starts its own daemon on port 80; the tests run
# their own instances, so stop the one the install just started.
if [[ " ${missing[*]} " == *" nginx "* ]]; then
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
		"${sudo[@]}" systemctl stop nginx || true
	elif command -v service >/dev/null 2>&1; then
		"${sudo[@]}" service nginx stop >/dev/null 2>&1 || true
	fi
fi
# Likewise redis-server's: the cluster tests start their own on free ports.
if [[ " ${missing[*]} " == *" redis-server "* ]]; then
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
		"${sudo[@]}" systemctl stop redis-server || true
	elif command -v service >/dev/null 2>&1; then
		"${sudo[@]}" service redis-server stop >/dev/null 2>&1 || true
	fi
fi
echo "deps: installed ${missing[*]}"
