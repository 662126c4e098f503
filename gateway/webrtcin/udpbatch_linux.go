//go:build linux

package webrtcin

import (
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Batched reads of the ICE socket. One goroutine (pion's UDP mux) reads
// every publisher's datagrams from the shared port, a recvfrom(2) each:
// in the 50-stream profile that system call was half of the socket
// reader's time (14% of the gateway's CPU). recvmmsg(2) takes what has
// arrived, up to udpBatch datagrams, in one call; ReadFrom then hands
// them out one by one.
//
// Each datagram comes with the time the kernel received it
// (SO_TIMESTAMPNS), which is what transport-wide feedback reports: the
// time the reader got to it would add the reader's own delays (a busy
// machine's scheduling, the coalescing wait, the batch's place in line)
// to the network's, and the publisher's delay-based estimator takes a
// growing delay for congestion and lowers its bit rate.
const (
	udpBatch = 32
	// udpBatchBuf is each datagram's buffer: WebRTC keeps datagrams
	// under the path MTU (pion's at most 1460 bytes of payload), so a
	// larger one is not ICE, DTLS or media of a publisher; it is dropped
	// (counted as truncated) where a 4 KiB read would have cut it.
	udpBatchBuf = 4096
	// cmsgBuf holds one SCM_TIMESTAMPNS control message (a struct
	// timespec) with room to spare.
	cmsgBuf = 64
	// maxStampAge bounds how far back a kernel timestamp is believed; an
	// older one (a clock step) is replaced by the batch's read time.
	maxStampAge = time.Second
	// cmsgMin is an SCM_TIMESTAMPNS message's length: a header and the
	// native struct timespec.
	cmsgMin = uint64(unix.SizeofCmsghdr + unsafe.Sizeof(unix.Timespec{}))
)

// mmsghdr is struct mmsghdr of recvmmsg(2): Go lays out the trailing
// length with C's padding.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// batchReader reads a UDP socket udpBatch datagrams at a time. Not safe
// for concurrent use: the mux reads its socket from one goroutine.
type batchReader struct {
	rc    syscall.RawConn
	msgs  [udpBatch]mmsghdr
	iovs  [udpBatch]unix.Iovec
	names [udpBatch]unix.RawSockaddrInet6
	cmsgs [udpBatch][cmsgBuf]byte
	buf   []byte // udpBatch buffers of udpBatchBuf
	// stamps: the socket gives kernel receive times; readAt is when the
	// batch was read (monotonic), the base they are placed on.
	stamps bool
	readAt time.Time

	n, next  int           // datagrams in the batch; the next to hand out
	errno    syscall.Errno // the last recvmmsg's error
	recv     func(fd uintptr) bool
	coalesce time.Duration // see ListenConfig.ReadCoalesce
	idle     func()        // nil, or called before each wait for more datagrams
	// The arrival rate, measured over windows of rateWindow: busy while
	// coalesce gathers coalesceMin datagrams or more (see Next).
	winStart  time.Time
	winCount  int
	busy      bool
	reads     uint64        // recvmmsg calls that returned datagrams
	truncated atomic.Uint64 // datagrams over udpBatchBuf, dropped (read by the metrics)
}

func newBatchReader(c *net.UDPConn, coalesce time.Duration) (*batchReader, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &batchReader{rc: rc, buf: make([]byte, udpBatch*udpBatchBuf), coalesce: coalesce}
	for i := range b.msgs {
		b.iovs[i].Base = &b.buf[i*udpBatchBuf]
		b.iovs[i].SetLen(udpBatchBuf)
		b.msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		b.msgs[i].hdr.Iov = &b.iovs[i]
		b.msgs[i].hdr.SetIovlen(1)
		b.msgs[i].hdr.Control = &b.cmsgs[i][0]
	}
	// Without timestamps (an old kernel) arrivals are the read time.
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err == nil && serr == nil {
		b.stamps = true
	}
	b.recv = b.recvmmsg // bound once: a method value per read would allocate
	return b, nil
}

// recvmmsg is the RawConn.Read callback: false (wait for the socket)
// only on EAGAIN, so the netpoller's edge is never missed.
func (b *batchReader) recvmmsg(fd uintptr) bool {
	for i := range b.msgs {
		b.msgs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		b.msgs[i].hdr.Flags = 0
		if b.stamps {
			b.msgs[i].hdr.SetControllen(cmsgBuf)
		}
	}
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.msgs[0])), udpBatch, unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		case 0:
			b.n, b.next = int(n), 0
			b.reads++
			if b.coalesce > 0 {
				b.measure(int(n))
			}
		default:
			b.errno = e
		}
		return true
	}
}

const (
	// rateWindow is how often the arrival rate is judged.
	rateWindow = 100 * time.Millisecond
	// coalesceMin: waiting pays only when it gathers this many datagrams
	// (measured: at ~1 datagram per wait, 10 streams, the extra timer
	// wake-ups cost a quarter more CPU; at ~6, 50 streams, and more,
	// waiting saved up to a seventh).
	coalesceMin = 4
)

// measure counts n datagrams into the rate window, and at its end decides
// whether the reader is busy: coalesceMin or more datagrams arrive in a
// coalesce.
func (b *batchReader) measure(n int) {
	b.winCount += n
	now := time.Now()
	if b.winStart.IsZero() {
		b.winStart = now
		return
	}
	if d := now.Sub(b.winStart); d >= rateWindow {
		b.busy = int64(b.winCount)*int64(b.coalesce) >= coalesceMin*int64(d)
		b.winStart, b.winCount = now, 0
	}
}

// ReadFrom copies the next datagram into p (cut to len(p), as a read(2)
// would) and returns its source.
func (b *batchReader) ReadFrom(p []byte) (int, netip.AddrPort, error) {
	d, from, _, err := b.Next()
	return copy(p, d), from, err
}

// Next returns the next datagram, in the batch's buffer: valid until the
// next call, its source and when it arrived.
func (b *batchReader) Next() ([]byte, netip.AddrPort, time.Time, error) {
	for {
		for b.next < b.n {
			i := b.next
			b.next++
			m := &b.msgs[i]
			if m.hdr.Flags&unix.MSG_TRUNC != 0 {
				b.truncated.Add(1)
				continue
			}
			ap, ok := sockaddrAddrPort(&b.names[i], m.hdr.Namelen)
			if !ok {
				continue
			}
			off := i * udpBatchBuf
			return b.buf[off : off+int(m.len) : off+int(m.len)], ap, b.arrival(i), nil
		}
		if b.idle != nil {
			b.idle()
		}
		if b.busy && b.n < udpBatch {
			// Datagrams come fast enough that waiting gathers several,
			// and this batch was not full: let more gather before the
			// next call (ListenConfig.ReadCoalesce).
			time.Sleep(b.coalesce)
		}
		b.n, b.next, b.errno = 0, 0, 0
		if err := b.rc.Read(b.recv); err != nil {
			return nil, netip.AddrPort{}, time.Time{}, err
		}
		if b.errno != 0 {
			return nil, netip.AddrPort{}, time.Time{}, os.NewSyscallError("recvmmsg", b.errno)
		}
		b.readAt = time.Now()
	}
}

// arrival is when datagram i of the batch arrived: its kernel timestamp
// (wall clock) moved onto readAt's monotonic clock, so that it orders
// with the gateway's other times and ignores wall clock steps; readAt
// without one.
func (b *batchReader) arrival(i int) time.Time {
	m := &b.msgs[i].hdr
	if !b.stamps || uint64(m.Controllen) < cmsgMin || m.Flags&unix.MSG_CTRUNC != 0 {
		return b.readAt
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b.cmsgs[i][0]))
	if h.Level != unix.SOL_SOCKET || h.Type != unix.SCM_TIMESTAMPNS || uint64(h.Len) < cmsgMin {
		return b.readAt
	}
	ts := (*unix.Timespec)(unsafe.Pointer(&b.cmsgs[i][unix.SizeofCmsghdr]))
	age := b.readAt.UnixNano() - ts.Nano()
	if age < 0 || age > int64(maxStampAge) {
		return b.readAt
	}
	return b.readAt.Add(-time.Duration(age))
}

// sockaddrAddrPort reads the source address the kernel wrote.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6, n uint32) (netip.AddrPort, bool) {
	switch sa.Family {
	case unix.AF_INET:
		if n < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}, false
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), netPort(&sa4.Port)), true
	case unix.AF_INET6:
		if n < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), netPort(&sa.Port)), true
	}
	return netip.AddrPort{}, false
}

// netPort reads a sockaddr's port, which is in network byte order.
func netPort(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}
