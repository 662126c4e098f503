#!/usr/bin/env bash
# Runs castbridge with its embedded defaults: the API on :8080, ICE on UDP
# 8189, and a built-in RTMP ingest on 127.0.0.1:1935 recording to
# ./recordings. It needs nothing but Go: the Opus decoder and the AAC
# encoder are in-process. Extra arguments are passed to castbridge (see
# --help).
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./cmd/castbridge "$@"
