package rtmppush

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/castbridge/castbridge/transmux/rtmppush/chunk"
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
