//go:build unix

package rtmppush

import "syscall"

const canTryWrite = true

// tryWriteFD is one write(2) on the runtime's non-blocking socket: a full
// send buffer writes 0 bytes and is no error.
func tryWriteFD(fd uintptr, p []byte) (int, error) {
	for {
		n, err := syscall.Write(int(fd), p)
		switch err {
		case nil:
			return n, nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, nil
		}
		return 0, err
	}
}
