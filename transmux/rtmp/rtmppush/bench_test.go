package rtmppush

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/castbridge/castbridge/transmux/rtmp/chunk"
)

// discardConn is a connection that accepts every write.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// BenchmarkWriteVideo measures the media write path: lock, deadline, chunk
// framing and flush, without the network.
func BenchmarkWriteVideo(b *testing.B) {
	for _, size := range []int{200, 5000, 60000} {
		b.Run(byteSize(size), func(b *testing.B) {
			p := &Publisher{conn: discardConn{}, wto: time.Second, done: make(chan struct{}), stream: 1}
			p.bw = bufio.NewWriterSize(countingWriter{p.conn, &p.sent}, 64*1024)
			p.cw = chunk.NewWriter(p.bw)
			p.cw.SetChunkSize(outChunkSize)
			body := make([]byte, size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				if err := p.WriteVideo(uint32(i), body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func byteSize(n int) string {
	switch {
	case n >= 1000:
		return string(rune('0'+n/10000%10)) + string(rune('0'+n/1000%10)) + "kB"
	}
	return "small"
}

// BenchmarkMediaTCP measures 100 ms of a stream's media as the gateway
// writes it (5 Opus/AAC frames of 200 bytes, 3 video frames of 4 kB,
// interleaved) on a loopback TCP connection whose other end is drained:
// "each" sends every message with its own write (the writer before
// batching), "batched" holds the audio until the next video frame flushes.
// The cost includes the kernel's (both ends of the loopback).
func BenchmarkMediaTCP(b *testing.B) {
	for _, batched := range []bool{false, true} {
		name := "each"
		if batched {
			name = "batched"
		}
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				buf := make([]byte, 64<<10)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			p := &Publisher{conn: conn, wto: 5 * time.Second, done: make(chan struct{}), stream: 1}
			p.bw = bufio.NewWriterSize(countingWriter{p.conn, &p.sent}, 64*1024)
			p.cw = chunk.NewWriter(p.bw)
			p.cw.SetChunkSize(outChunkSize)
			p.SetBatching(batched)
			audio, video := make([]byte, 200), make([]byte, 4000)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				ts := uint32(i * 100)
				for k, isVideo := range []bool{false, true, false, false, true, false, true, false} {
					var err error
					if isVideo {
						if err = p.WriteVideo(ts+uint32(k), video); err == nil {
							err = p.Flush()
						}
					} else {
						err = p.WriteAudio(ts+uint32(k), audio)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
