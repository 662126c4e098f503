#!/usr/bin/env bash
# Runs the AAC quality report (transmux/codec/aaclc TestQualityReport):
# castbridge's encoder against FFmpeg's native aac encoder at 64–160 kbit/s
# on synthesized stress signals and recordings from Debian packages, each
# stream decoded by FFmpeg and by faad. Installs what it needs (ffmpeg,
# faad, espeak-ng, the sound packages) and writes the report to
# docs/aac-quality-latest.md, or to the file given as $1. Extra arguments go
# to the test binary, e.g. -quality.rates 128 -quality.only clicks,speech-alsa,
# or -quality.pictures "$PWD/docs/aac-quality" for spectrograms (an absolute
# path: the test runs in its package directory).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/aac-quality-latest.md}
[[ $out == /* ]] || out=$PWD/$out
shift || true

scripts/deps.sh ffmpeg faad
missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
[ -e /usr/share/sounds/alsa/Front_Center.wav ] || missing+=(alsa-utils)
[ -e /usr/share/sounds/freedesktop/stereo/bell.oga ] || missing+=(sound-theme-freedesktop)
if [ ${#missing[@]} -gt 0 ]; then
	sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	echo "aac-quality: installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
go test -count=1 -timeout 30m -run '^TestQualityReport$' ./transmux/codec/aaclc \
	-quality -quality.out "$out" "$@"
echo "aac-quality: report in $out"
