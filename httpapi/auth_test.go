package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestAPIKeyAndCORS(t *testing.T) {
	srv := newServer(t, "s3cret")
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
