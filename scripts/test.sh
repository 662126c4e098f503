#!/usr/bin/env bash
# Runs everything CI runs: installs missing system programs, vets, tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
# playwright-core drives Chromium in the browser tests, and whip-whep is the WHIP client they
# publish with; installed from the lock file when either is missing.
if { [ ! -d httpapi/web/test/node_modules/playwright-core ] || [ ! -d httpapi/web/test/node_modules/whip-whep ]; } &&
	command -v npm >/dev/null 2>&1; then
	(cd httpapi/web/test && npm ci --no-audit --no-fund --loglevel=error)
fi
go vet ./...
go test -race -count=1 -timeout 20m ./...
