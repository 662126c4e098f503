// Package srtpfloor holds only a benchmark: the floor under castbridge's
// per-packet cost, i.e. what receiving an SRTP packet from a UDP socket and
// decrypting it costs with nothing else done (see floor_test.go).
package srtpfloor
