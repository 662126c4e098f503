// Package e2e holds castbridge's end-to-end tests: each starts a real
// gateway (ICE on loopback UDP) with its HTTP API, a pion test publisher
// and an in-process RTMP ingest (nginx-rtmp and Chromium where a test needs
// them), and checks what reaches the ingest. It has no code of its own;
// the harness is in harness_test.go.
package e2e
