package outpolicy

import (
	"strconv"
	"syscall"
	"testing"
	"time"
)

type rawConn = syscall.RawConn

func itoa(n int) string { return strconv.Itoa(n) }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
