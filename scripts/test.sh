#!/usr/bin/env bash
# Runs everything CI runs: installs missing system programs, vets, tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
go vet ./...
go test -race -count=1 -timeout 20m ./...
