package httpapi_test

import (
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/httpapi"
)

// The tests here need the API and no media: a manager nobody publishes to
// behind an httptest server. The end-to-end tests (a publisher, the gateway
// and an ingest) are in httpapi/e2e.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The net/http keep-alive of the shared client is process-wide.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// newServer serves the API of a fresh manager (ICE on loopback) until the
// test ends.
func newServer(t *testing.T, apiKey string) *httptest.Server {
	t.Helper()
	srv, _ := newServerWith(t, func(c *httpapi.Config) { c.APIKey = apiKey })
	return srv
}

// newServerWith is newServer with the API's configuration (its Manager
// and Logger set) adjusted by opt, and a manager configured by mopt; it
// returns the manager too.
func newServerWith(t *testing.T, opt func(*httpapi.Config), mopt ...func(*gateway.Config)) (*httptest.Server, *gateway.Manager) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), nil)) // no media: nothing logs after the test

	gcfg := gateway.Config{
		ICEIPs: []net.IP{net.IPv4(127, 0, 0, 1).To4()},
		Logger: log,
	}
	for _, o := range mopt {
		o(&gcfg)
	}
	m, err := gateway.NewManager(gcfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := httpapi.Config{Manager: m, Logger: log}
	if opt != nil {
		opt(&cfg)
	}
	srv := httptest.NewServer(httpapi.New(cfg))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		srv.Close()
	})
	return srv, m
}
