//go:build !linux

package webrtcin

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// batchReader: recvmmsg(2) is Linux's; elsewhere the socket is read a
// datagram at a time (newBatchReader fails, and the caller reads itself).
type batchReader struct {
	truncated atomic.Uint64
	idle      func()
}

func newBatchReader(*net.UDPConn, time.Duration) (*batchReader, error) {
	return nil, errors.New("recvmmsg: not on this system")
}

func (*batchReader) ReadFrom([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, errors.New("recvmmsg: not on this system")
}

func (*batchReader) Next() ([]byte, netip.AddrPort, time.Time, error) {
	return nil, netip.AddrPort{}, time.Time{}, errors.New("recvmmsg: not on this system")
}
