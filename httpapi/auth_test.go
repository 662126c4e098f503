package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/castbridge/castbridge/httpapi"
)

func TestAPIKeyAndCORS(t *testing.T) {
	srv, _ := newServerWith(t, func(c *httpapi.Config) { c.APIKey, c.CORSOrigins = "s3cret", []string{"*"} })
	do := func(method, path, auth, contentType, body string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, c := range []struct {
		method, path, auth, ct string
		want                   int
	}{
		{"GET", "/v1/streams", "", "", 401},
		{"GET", "/v1/streams", "Bearer wrong", "", 401},
		{"GET", "/v1/streams", "Bearer s3cret", "", 200},
		{"GET", "/v1/streams", "bearer s3cret", "", 200},
		{"POST", "/whip", "", "application/sdp", 401},
		{"POST", "/whip", "Bearer s3cret", "text/plain", 415},
		{"POST", "/whip", "Bearer s3cret", "application/sdp", 400}, // empty offer: INVALID_SDP
		{"DELETE", "/whip/st_none", "Bearer s3cret", "", 404},
		{"PATCH", "/whip/st_none", "Bearer s3cret", "application/trickle-ice-sdpfrag", 404},
		{"PATCH", "/whip/st_none", "", "application/trickle-ice-sdpfrag", 401},
		{"PATCH", "/v1/streams/st_none/ice", "Bearer s3cret", "application/trickle-ice-sdpfrag", 404},
		{"PATCH", "/v1/streams/st_none/ice", "", "application/trickle-ice-sdpfrag", 401},
		{"GET", "/healthz", "", "", 200},
		{"GET", "/readyz", "", "", 200},
		{"GET", "/openapi.json", "", "", 200},
	} {
		if got := do(c.method, c.path, c.auth, c.ct, "", nil).StatusCode; got != c.want {
			t.Errorf("%s %s (auth %q, %s): %d, want %d", c.method, c.path, c.auth, c.ct, got, c.want)
		}
	}
	resp := do("GET", "/v1/streams", "", "", "", nil)
	if resp.Header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}

	// WHIP pre-flight and CORS for browser apps on other origins.
	resp = do("OPTIONS", "/whip", "", "", "", map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("CORS pre-flight: %d %v", resp.StatusCode, resp.Header)
	}
	resp = do("OPTIONS", "/whip", "", "", "", nil)
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Accept-Post") != "application/sdp" {
		t.Errorf("WHIP OPTIONS: %d %v", resp.StatusCode, resp.Header)
	}
	resp = do("GET", "/v1/streams", "Bearer s3cret", "", "", map[string]string{"Origin": "https://app.example"})
	if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Location") {
		t.Errorf("Location is not exposed to browser apps: %v", resp.Header)
	}
}

// TestCORSPreflight: the pre-flight answers allow exactly the methods of
// the path and the request headers the routes read, and every answer to a
// cross-origin request exposes the headers WHIP clients read.
func TestCORSPreflight(t *testing.T) {
	srv, _ := newServerWith(t, func(c *httpapi.Config) { c.CORSOrigins = []string{"*"} })
	do := func(method, path string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	const headers = "Authorization, Content-Type, If-Match"
	const exposed = "ETag, Location, Link, Accept-Patch, Accept-Post"
	for _, c := range []struct{ path, method, reqHeaders, methods string }{
		{"/whip", "POST", "authorization,content-type", "POST, OPTIONS"},
		{"/whip/st_abc", "PATCH", "content-type,if-match", "POST, PATCH, DELETE, OPTIONS"},
		{"/whip/st_abc", "DELETE", "authorization", "POST, PATCH, DELETE, OPTIONS"},
		{"/v1/streams", "POST", "authorization,content-type", "GET, POST, PATCH, DELETE, OPTIONS"},
		{"/v1/streams/st_abc/ice", "PATCH", "content-type,if-match", "GET, POST, PATCH, DELETE, OPTIONS"},
	} {
		resp := do("OPTIONS", c.path, map[string]string{"Origin": "https://app.example",
			"Access-Control-Request-Method": c.method, "Access-Control-Request-Headers": c.reqHeaders})
		h := resp.Header
		if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "*" ||
			h.Get("Access-Control-Allow-Methods") != c.methods || h.Get("Access-Control-Allow-Headers") != headers ||
			h.Get("Access-Control-Expose-Headers") != exposed || h.Get("Access-Control-Max-Age") != "600" {
			t.Errorf("pre-flight %s %s: %d %v", c.method, c.path, resp.StatusCode, h)
		}
	}
	// WHIP OPTIONS without CORS: Allow and Accept-*.
	resp := do("OPTIONS", "/whip/st_abc", nil)
	if h := resp.Header; resp.StatusCode != http.StatusNoContent || h.Get("Allow") != "POST, PATCH, DELETE, OPTIONS" ||
		h.Get("Accept-Patch") != "application/trickle-ice-sdpfrag" || h.Get("Accept-Post") != "application/sdp" ||
		h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("OPTIONS /whip/st_abc: %d %v", resp.StatusCode, h)
	}
	resp = do("OPTIONS", "/whip", nil)
	if h := resp.Header; h.Get("Allow") != "POST, OPTIONS" || h.Get("Accept-Patch") != "" {
		t.Errorf("OPTIONS /whip: %v", h)
	}
	// A cross-origin request proper: exposed headers, no pre-flight ones.
	resp = do("DELETE", "/whip/st_abc", map[string]string{"Origin": "https://app.example"})
	if h := resp.Header; resp.StatusCode != http.StatusNotFound || h.Get("Access-Control-Allow-Origin") != "*" ||
		h.Get("Access-Control-Expose-Headers") != exposed || h.Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("cross-origin DELETE: %d %v", resp.StatusCode, h)
	}
}
