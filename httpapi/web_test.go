package httpapi_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestWebRoutes checks what the demo page and the SDK are served as, with no
// API key needed even when the server has one.
func TestWebRoutes(t *testing.T) {
	srv := newServer(t, "k")
	get := func(path string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, c := range []struct{ path, ctype, contains string }{
		{"/", "text/html; charset=utf-8", `src="/assets/app.js"`},
		{"/sdk/castbridge.js", "text/javascript; charset=utf-8", "export { RtcUser"},
		{"/assets/app.js", "text/javascript; charset=utf-8", "from '/sdk/castbridge.js'"},
		{"/assets/style.css", "text/css; charset=utf-8", "@media"},
		{"/assets/favicon.svg", "image/svg+xml", "<svg"},
	} {
		resp, body := get(c.path, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != c.ctype || !strings.Contains(body, c.contains) {
			t.Errorf("GET %s: %d %q, body has %q: %v", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.contains, strings.Contains(body, c.contains))
		}
	}

	// A classic <script> gets the SDK without its export statements.
	for _, hdr := range []map[string]string{
		{"Sec-Fetch-Dest": "script", "Sec-Fetch-Mode": "no-cors"},
		nil,
	} {
		path := "/sdk/castbridge.js"
		if hdr == nil {
			path += "?format=script"
		}
		_, body := get(path, hdr)
		if strings.Contains(body, "export ") || !strings.Contains(body, "var RtcUser = CastbridgeSDK.RtcUser;") {
			t.Errorf("classic SDK (%s, %v) still has exports or lost RtcUser", path, hdr)
		}
	}
	if _, body := get("/sdk/castbridge.js", map[string]string{"Sec-Fetch-Dest": "script", "Sec-Fetch-Mode": "cors"}); !strings.Contains(body, "export default RtcUser") {
		t.Error("module import of the SDK lost its exports")
	}

	// Nothing else is served from the embedded files: no listings, no tests.
	for _, p := range []string{"/assets/", "/assets/../test/browser.mjs", "/test/browser.mjs", "/web/index.html"} {
		if resp, _ := get(p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	if resp, _ := get("/v1/streams", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v1/streams without the key: %d, want 401", resp.StatusCode)
	}
}
