// Package gateway owns castbridge's live objects: a Manager holds the
// publishers' WebRTC sessions (Stream), a Stream may run one Broadcast, and a
// Broadcast pushes the stream to one or more RTMP ingests (Target).
//
// Media flows one way: RTP from pion is reordered and depacketized into access
// units on the stream's receive goroutine, muxed once into FLV tag bodies, and
// handed by reference to every target's bounded queue. Each target has its own
// writer goroutine, so a slow ingest never holds up the others or the receive
// path.
package gateway
