package cluster

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzVerify: whatever a request's hop headers say, Verify never panics,
// and it accepts only what the secret signed: an accepted request's
// signature is the one Sign makes for its sender, time, method, URI and
// caller address.
func FuzzVerify(f *testing.F) {
	const secret = "fuzz-cluster-secret-0123"
	now := time.Unix(1_800_000_000, 0)
	r := httptest.NewRequest(http.MethodGet, "http://b:8080/v1/streams/st_1/events?stats=500", nil)
	signWith(secret, "a", r, "198.51.100.7:5000", now)
	f.Add("a", r.Header.Get(AuthHeader), "198.51.100.7:5000", "GET", "/v1/streams/st_1/events?stats=500")
	f.Add("a", "1800000000.", "", "DELETE", "/whip/st_2")
	f.Add("", "x.y", "", "GET", "/")
	f.Add("node", "-1800000000."+strings.Repeat("0", 64), "::1", "PATCH", "/whip/%2e%2e")
	f.Fuzz(func(t *testing.T, node, auth, remote, method, uri string) {
		if !strings.HasPrefix(uri, "/") || strings.ContainsAny(uri, " \r\n#") || method == "" || strings.ContainsAny(method, " \r\n/") {
			return
		}
		req, err := http.NewRequest(method, "http://b:8080"+uri, nil)
		if err != nil {
			return
		}
		req.Header.Set(HopHeader, node)
		req.Header.Set(AuthHeader, auth)
		req.Header.Set(RemoteAddrHeader, remote)
		gotNode, gotRemote, err := verifyWith(secret, req, now)
		if err != nil {
			return
		}
		if gotNode != req.Header.Get(HopHeader) || gotRemote != req.Header.Get(RemoteAddrHeader) {
			t.Fatalf("accepted as %q %q from headers %q %q", gotNode, gotRemote, node, remote)
		}
		ts, _, _ := strings.Cut(req.Header.Get(AuthHeader), ".")
		want := ts + "." + mac(secret, gotNode, ts, req.Method, req.URL.RequestURI(), gotRemote)
		if req.Header.Get(AuthHeader) != want {
			t.Fatalf("accepted %q, the signature is %q", req.Header.Get(AuthHeader), want)
		}
	})
}
