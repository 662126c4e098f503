//go:build !unix

package rtmppush

import "errors"

// Without a non-blocking write(2) every write waits; the publisher says so
// (Publisher.CanWriteNonBlocking).
const canTryWrite = false

func tryWriteFD(uintptr, []byte) (int, error) {
	return 0, errors.New("non-blocking write not supported")
}
