package gatewaytest

import (
	"testing"

	"go.uber.org/goleak"
)

// The helpers must not leave goroutines behind once closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
