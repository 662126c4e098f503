package httpapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/gateway/rtmpout"
	"github.com/castbridge/castbridge/httpapi"
	"github.com/castbridge/castbridge/httpapi/auth"
)

const (
	matrixAPIKey   = "master-api-key-0123456789"
	matrixRelayKey = "relay-stream-key-0123"
	matrixSecret   = "an-hmac-secret-of-at-least-32-bytes!!"
)

// mint signs a publish token with the matrix's HMAC secret.
func mint(t *testing.T, c auth.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(matrixSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claimsFor(stream string, exp time.Duration, outputs ...string) auth.Claims {
	return auth.Claims{Stream: stream, Outputs: outputs, RegisteredClaims: jwt.RegisteredClaims{
		Subject: "user-" + stream, ID: "jti-" + stream, ExpiresAt: jwt.NewNumericDate(time.Now().Add(exp))}}
}

// offer makes a real SDP offer (H.264 and Opus, host candidates on
// loopback) once per test; streams made from it stay connecting.
func offer(t *testing.T) string {
	t.Helper()
	p, err := gatewaytest.NewPublisher(gatewaytest.PublisherConfig{VideoFile: "../testdata/video.h264", AudioFile: "../testdata/audio.ogg"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sdp, err := p.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return sdp
}

type client struct {
	t   *testing.T
	url string
}

type answer struct {
	status int
	code   string
	header http.Header
	body   string
}

func (c client) do(method, path, bearer, ctype, body string, hdr ...string) answer {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(raw)}
	var eb struct {
		Error struct{ Code string } `json:"error"`
	}
	if json.Unmarshal(raw, &eb) == nil {
		a.code = eb.Error.Code
	}
	return a
}

// createStream makes a stream with POST /v1/streams as bearer and returns its id.
func (c client) createStream(sdp, bearer string) string {
	c.t.Helper()
	body, _ := json.Marshal(map[string]string{"sdp": sdp})
	a := c.do("POST", "/v1/streams", bearer, "application/json", string(body))
	if a.status != http.StatusCreated {
		c.t.Fatalf("POST /v1/streams: %d %s", a.status, a.body)
	}
	var out struct{ ID string }
	if err := json.Unmarshal([]byte(a.body), &out); err != nil || out.ID == "" {
		c.t.Fatalf("POST /v1/streams: %s", a.body)
	}
	return out.ID
}

// whip publishes over WHIP as bearer and returns the session's path.
func (c client) whip(sdp, bearer string) string {
	c.t.Helper()
	a := c.do("POST", "/whip", bearer, "application/sdp", sdp)
	if a.status != http.StatusCreated || !strings.HasPrefix(a.header.Get("Location"), "/whip/st_") {
		c.t.Fatalf("WHIP POST: %d %s", a.status, a.body)
	}
	return a.header.Get("Location")
}

// TestAuthMatrix: every route × every kind of credential, with the status
// and error code each must get. "this" is a stream (and a WHIP session)
// created by a publish token for stream "alice".
func TestAuthMatrix(t *testing.T) {
	var logs gatewaytest.SyncBuffer
	srv, m := newServerWith(t, func(c *httpapi.Config) {
		v, err := auth.NewVerifier(auth.VerifierConfig{Key: []byte(matrixSecret)})
		if err != nil {
			t.Fatal(err)
		}
		c.APIKey, c.Tokens = matrixAPIKey, v
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}, func(g *gateway.Config) {
		g.Relays = []gateway.Relay{{Name: "studio", Key: matrixRelayKey, Targets: []rtmpout.Spec{{Output: "rtmp://127.0.0.1:1/live", StreamName: "relay-out"}}}}
	})
	c := client{t: t, url: srv.URL}
	sdp := offer(t)

	alice := mint(t, claimsFor("alice", time.Hour))
	bob := mint(t, claimsFor("bob", time.Hour))
	expired := mint(t, claimsFor("alice", -time.Hour))
	// alg "none" and HS384 (the right secret, an algorithm not accepted).
	noneTok, err := jwt.NewWithClaims(jwt.SigningMethodNone, claimsFor("alice", time.Hour)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	hs384, err := jwt.NewWithClaims(jwt.SigningMethodHS384, claimsFor("alice", time.Hour)).SignedString([]byte(matrixSecret))
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	es256, err := jwt.NewWithClaims(jwt.SigningMethodES256, claimsFor("alice", time.Hour)).SignedString(ecKey)
	if err != nil {
		t.Fatal(err)
	}

	type cred struct{ name, bearer string }
	creds := []cred{
		{"none", ""}, {"wrong", "wrong-token"}, {"apiKey", matrixAPIKey}, {"tokenThis", alice}, {"tokenOther", bob},
		{"expired", expired}, {"algNone", noneTok}, {"algHS384", hs384}, {"algES256", es256}, {"relay", matrixRelayKey},
	}
	// Outcomes per credential kind: allowed (the route's own answer), 401, or 403.
	const (
		ok = iota
		unauth
		forbid
	)
	v1 := map[string]int{"none": unauth, "wrong": unauth, "apiKey": ok, "tokenThis": ok, "tokenOther": forbid,
		"expired": unauth, "algNone": unauth, "algHS384": unauth, "algES256": unauth, "relay": unauth}

	type route struct {
		method, path, ctype, body string
		status                    int    // when allowed
		code                      string // when allowed, "" for a success
	}
	routes := []route{
		{"GET", "/v1/streams/{id}", "", "", 200, ""},
		{"PATCH", "/v1/streams/{id}", "application/json", `{"audioMuted":true}`, 200, ""},
		{"POST", "/v1/streams/{id}/broadcast", "application/json", `{"targets":[]}`, 400, "INVALID_REQUEST"},
		{"GET", "/v1/streams/{id}/broadcast", "", "", 404, "NOT_BROADCASTING"},
		{"DELETE", "/v1/streams/{id}/broadcast", "", "", 404, "NOT_BROADCASTING"},
		{"PATCH", "/v1/streams/{id}/ice", "text/plain", "", 415, "INVALID_REQUEST"},
		{"GET", "/v1/streams/{id}/stats", "", "", 200, ""},
		{"GET", "/v1/streams/{id}/events?stats=1", "", "", 400, "INVALID_REQUEST"},
		{"POST", "/v1/streams/{id}/metadata", "application/json", `{"handlerName":"onCuePoint","values":{}}`, 409, "NOT_BROADCASTING"},
		{"POST", "/v1/streams/{id}/broadcast/targets", "application/json", `{"output":"rtmp://a.example/live/x"}`, 404, "NOT_BROADCASTING"},
		{"DELETE", "/v1/streams/{id}/broadcast/targets/tg_x", "", "", 404, "NOT_BROADCASTING"},
		{"DELETE", "/v1/streams/{id}", "", "", 204, ""}, // last: it ends the stream
	}
	check := func(what string, a answer, outcome int, status int, code string) {
		t.Helper()
		switch outcome {
		case unauth:
			status, code = 401, "UNAUTHORIZED"
			if a.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s: 401 without WWW-Authenticate", what)
			}
		case forbid:
			status, code = 403, "FORBIDDEN"
		}
		if a.status != status || (code != "" && a.code != code) {
			t.Errorf("%s: %d %s, want %d %s", what, a.status, a.body, status, code)
		}
		for _, secret := range []string{matrixAPIKey, matrixRelayKey, matrixSecret, alice, bob} {
			if strings.Contains(a.body, secret) {
				t.Errorf("%s: the answer holds a credential: %s", what, a.body)
			}
		}
	}

	for _, cr := range creds {
		t.Run(cr.name, func(t *testing.T) {
			// The stream of scope "alice" the routes act on: a fresh one, the
			// last route deletes it.
			id := c.createStream(sdp, alice)
			for _, r := range routes {
				path := strings.ReplaceAll(r.path, "{id}", id)
				check(cr.name+" "+r.method+" "+path, c.do(r.method, path, cr.bearer, r.ctype, r.body), v1[cr.name], r.status, r.code)
			}
			if v1[cr.name] != ok {
				c.do("DELETE", "/v1/streams/"+id, matrixAPIKey, "", "")
			}

			// Create and list: a token creates its own stream; the list shows
			// its scope's streams only.
			create := v1[cr.name]
			if create == forbid {
				create = ok // bob creates a stream of his own
			}
			body, _ := json.Marshal(map[string]string{"sdp": sdp})
			a := c.do("POST", "/v1/streams", cr.bearer, "application/json", string(body))
			check(cr.name+" POST /v1/streams", a, create, 201, "")
			var made struct{ ID string }
			_ = json.Unmarshal([]byte(a.body), &made)
			a = c.do("GET", "/v1/streams", cr.bearer, "", "")
			check(cr.name+" GET /v1/streams", a, create, 200, "")
			if a.status == 200 {
				var list struct{ Streams []gateway.StreamInfo }
				if err := json.Unmarshal([]byte(a.body), &list); err != nil {
					t.Fatal(err)
				}
				for _, s := range list.Streams {
					st, err := m.Stream(s.ID)
					if err != nil {
						continue
					}
					if (cr.name == "tokenThis" && st.Scope() != "alice") || (cr.name == "tokenOther" && st.Scope() != "bob") {
						t.Errorf("%s: the list shows stream %s of scope %q", cr.name, s.ID, st.Scope())
					}
				}
				if !strings.Contains(a.body, made.ID) {
					t.Errorf("%s: the list lacks the stream it made: %s", cr.name, a.body)
				}
			}
			if made.ID != "" {
				c.do("DELETE", "/v1/streams/"+made.ID, matrixAPIKey, "", "")
			}

			// WHIP: publish, then PATCH and DELETE alice's session.
			whipPost := v1[cr.name]
			if cr.name == "relay" || cr.name == "tokenOther" {
				whipPost = ok
			}
			a = c.do("POST", "/whip", cr.bearer, "application/sdp", sdp)
			check(cr.name+" POST /whip", a, whipPost, 201, "")
			own := a.header.Get("Location")

			session := c.whip(sdp, alice)
			whipOther := v1[cr.name]
			if cr.name == "relay" {
				whipOther = forbid // a relay key ends only its own sessions
			}
			check(cr.name+" PATCH "+session, c.do("PATCH", session, cr.bearer, "text/plain", ""), whipOther, 415, "INVALID_REQUEST")
			check(cr.name+" DELETE "+session, c.do("DELETE", session, cr.bearer, "", ""), whipOther, 200, "")
			if whipOther != ok {
				c.do("DELETE", session, matrixAPIKey, "", "")
			}
			if own != "" { // its own session: ended by the credential it was published with
				check(cr.name+" PATCH own "+own, c.do("PATCH", own, cr.bearer, "text/plain", ""), ok, 415, "INVALID_REQUEST")
				check(cr.name+" DELETE own "+own, c.do("DELETE", own, cr.bearer, "", ""), ok, 200, "")
			}
		})
	}
	// Expired tokens say so.
	if a := c.do("GET", "/v1/streams", expired, "", ""); !strings.Contains(a.body, "expired") {
		t.Errorf("expired token: %s", a.body)
	}
	// The API's logs (every request, at debug) hold no credential.
	out := logs.String()
	if !strings.Contains(out, "/v1/streams") {
		t.Fatalf("no access log: %q", out)
	}
	for _, cr := range creds {
		if cr.bearer != "" && strings.Contains(out, cr.bearer) {
			t.Errorf("the logs hold the %s credential", cr.name)
		}
	}
}

// TestScopedOutputs: a token pushes only to the hosts of its outputs
// claim, never to loopback or private addresses, while the API key may.
func TestScopedOutputs(t *testing.T) {
	srv, _ := newServerWith(t, func(c *httpapi.Config) {
		v, err := auth.NewVerifier(auth.VerifierConfig{Key: []byte(matrixSecret)})
		if err != nil {
			t.Fatal(err)
		}
		c.APIKey, c.Tokens = matrixAPIKey, v
	})
	c := client{t: t, url: srv.URL}
	sdp := offer(t)
	tok := mint(t, claimsFor("alice", time.Hour, "127.0.0.1", "10.1.2.3:1935", "a.rtmp.example"))
	id := c.createStream(sdp, tok)
	// API.md: a policy's refusal is 400 OUTPUT_NOT_ALLOWED; a host outside
	// the token's claims is 403 FORBIDDEN.
	for _, tc := range []struct {
		output, want string
		status       int
		code         string
	}{
		{"rtmp://127.0.0.1:1935/live", "loopback address, which a scoped token may not push to", 400, "OUTPUT_NOT_ALLOWED"},
		{"rtmp://10.1.2.3:1935/live", "private address, which a scoped token may not push to", 400, "OUTPUT_NOT_ALLOWED"},
		{"rtmp://[::1]:1935/live", "not among the output hosts this token allows", 403, "FORBIDDEN"},
		{"rtmp://b.rtmp.example/live", "not among the output hosts this token allows", 403, "FORBIDDEN"},
		{"rtmp://a.rtmp.example.evil.test/live", "not among the output hosts this token allows", 403, "FORBIDDEN"},
	} {
		body := `{"targets":[{"output":"` + tc.output + `","streamname":"SECRETKEY"}]}`
		a := c.do("POST", "/v1/streams/"+id+"/broadcast", tok, "application/json", body)
		if a.status != tc.status || a.code != tc.code || !strings.Contains(a.body, tc.want) || strings.Contains(a.body, "SECRETKEY") {
			t.Errorf("token broadcast to %s: %d %s, want %d %s %q", tc.output, a.status, a.body, tc.status, tc.code, tc.want)
		}
		a = c.do("POST", "/v1/streams", tok, "application/json", `{"sdp":`+strings.TrimSpace(mustJSON(sdp))+`,"broadcast":`+body+`}`)
		if a.status != tc.status || a.code != tc.code || !strings.Contains(a.body, tc.want) {
			t.Errorf("token stream with a broadcast to %s: %d %s, want %d %s %q", tc.output, a.status, a.body, tc.status, tc.code, tc.want)
		}
	}
	// A name other than the token's stream claim is refused.
	if a := c.do("POST", "/v1/streams", tok, "application/json", `{"sdp":`+mustJSON(sdp)+`,"name":"bob"}`); a.status != 403 || a.code != "FORBIDDEN" {
		t.Errorf("token creating another stream name: %d %s", a.status, a.body)
	}
	// The API key may push to loopback (the gateway allows it by default):
	// the start fails at the dial (nothing listens on port 1), not the policy.
	a := c.do("POST", "/v1/streams/"+id+"/broadcast", matrixAPIKey, "application/json", `{"targets":[{"output":"rtmp://127.0.0.1:1/live","streamname":"x"}]}`)
	if a.code == "OUTPUT_NOT_ALLOWED" || a.code == "FORBIDDEN" {
		t.Errorf("API key broadcast to loopback: %d %s", a.status, a.body)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestAuthWebhook: the webhook is asked before a publish and a broadcast
// start with what it needs and no secret; a refusal, an error and a
// timeout all refuse with 403 FORBIDDEN.
func TestAuthWebhook(t *testing.T) {
	var (
		mu     sync.Mutex
		asked  []auth.Request
		raws   []string
		answer = http.StatusOK
		delay  time.Duration
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var req auth.Request
		if err := json.Unmarshal(raw, &req); err != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook request: %s %s %v", r.Method, raw, err)
		}
		mu.Lock()
		asked, raws = append(asked, req), append(raws, string(raw)+r.Header.Get("Authorization"))
		status, d := answer, delay
		mu.Unlock()
		if d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
			}
		}
		if status == http.StatusFound {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, "backend says: internal-detail")
	}))
	defer hook.Close()
	set := func(status int, d time.Duration) {
		mu.Lock()
		answer, delay = status, d
		mu.Unlock()
	}
	wh := auth.NewWebhook(hook.URL, 300*time.Millisecond)
	defer wh.Close()
	srv, _ := newServerWith(t, func(c *httpapi.Config) {
		v, err := auth.NewVerifier(auth.VerifierConfig{Key: []byte(matrixSecret)})
		if err != nil {
			t.Fatal(err)
		}
		c.APIKey, c.Tokens, c.AuthWebhook = matrixAPIKey, v, wh
	}, func(g *gateway.Config) {
		g.Relays = []gateway.Relay{{Name: "studio", Key: matrixRelayKey, Targets: []rtmpout.Spec{{Output: "rtmp://relay.example:1935/live?secret=QUERYSECRET", StreamName: "RELAYSTREAMKEY"}}}}
	})
	c := client{t: t, url: srv.URL}
	sdp := offer(t)
	tok := mint(t, claimsFor("alice", time.Hour, "a.rtmp.example"))

	// Allowed: a token's publish, a broadcast start, an add, a relay's WHIP publish.
	id := c.createStream(sdp, tok)
	a := c.do("POST", "/v1/streams/"+id+"/broadcast", tok, "application/json",
		`{"targets":[{"output":"rtmp://a.rtmp.example/live/STREAMKEY1?pw=QUERYSECRET","icecast_audio":false}]}`)
	if a.code == "FORBIDDEN" {
		t.Errorf("allowed broadcast: %d %s", a.status, a.body)
	}
	relaySession := c.do("POST", "/whip", matrixRelayKey, "application/sdp", sdp)
	if relaySession.status != 201 {
		t.Fatalf("relay publish: %d %s", relaySession.status, relaySession.body)
	}
	// API.md: a token's outputs claim may hold relay keys: its WHIP
	// publish goes to that relay.
	relayTok := mint(t, claimsFor("alice", time.Hour, "a.rtmp.example", matrixRelayKey))
	if a := c.do("POST", "/whip", relayTok, "application/sdp", sdp); a.status != 201 {
		t.Fatalf("publish with a relay key in the outputs claim: %d %s", a.status, a.body)
	}
	mu.Lock()
	got := append([]auth.Request(nil), asked...)
	all := strings.Join(raws, "\n")
	mu.Unlock()
	if len(got) != 4 {
		t.Fatalf("webhook asked %d times, want 4: %+v", len(got), got)
	}
	if r := got[3]; r.Action != "publish" || r.Credential.Kind != "token" || r.Credential.Relay != "studio" ||
		len(r.Outputs) != 1 || r.Outputs[0] != "rtmp://relay.example:1935/live/****" {
		t.Errorf("token publish to a relay by its key in outputs: %+v", r)
	}
	if r := got[0]; r.Action != "publish" || r.Protocol != "api" || r.StreamName != "alice" || r.Credential.Kind != "token" ||
		r.Credential.Subject != "user-alice" || r.Credential.TokenID != "jti-alice" || r.Credential.Scope != "alice" || r.RemoteAddr == "" || len(r.Outputs) != 0 {
		t.Errorf("publish request: %+v", r)
	}
	if r := got[1]; r.Action != "broadcast" || r.StreamID != id || len(r.Outputs) != 1 || r.Outputs[0] != "rtmp://a.rtmp.example/live/****" {
		t.Errorf("broadcast request: %+v", r)
	}
	if r := got[2]; r.Action != "publish" || r.Protocol != "whip" || r.Credential.Kind != "relay" || r.Credential.Relay != "studio" ||
		len(r.Outputs) != 1 || r.Outputs[0] != "rtmp://relay.example:1935/live/****" {
		t.Errorf("relay publish request: %+v", r)
	}
	for _, secret := range []string{"STREAMKEY1", "QUERYSECRET", "RELAYSTREAMKEY", matrixRelayKey, matrixAPIKey, tok, relayTok, matrixSecret} {
		if strings.Contains(all, secret) {
			t.Errorf("the webhook was sent a secret (%s): %s", secret, all)
		}
	}

	// Refused: 403 from the backend, a redirect (not followed), a timeout.
	for _, tc := range []struct {
		status int
		delay  time.Duration
		want   string
	}{
		{http.StatusForbidden, 0, "refused this (HTTP 403)"},
		{http.StatusFound, 0, "refused this (HTTP 302)"},
		{http.StatusOK, 2 * time.Second, "did not answer in time"},
	} {
		set(tc.status, tc.delay)
		start := time.Now()
		a := c.do("POST", "/v1/streams", tok, "application/json", `{"sdp":`+mustJSON(sdp)+`}`)
		if a.status != 403 || a.code != "FORBIDDEN" || !strings.Contains(a.body, tc.want) || strings.Contains(a.body, "internal-detail") {
			t.Errorf("webhook %d after %v: %d %s, want 403 FORBIDDEN %q", tc.status, tc.delay, a.status, a.body, tc.want)
		}
		if el := time.Since(start); tc.delay > 0 && el > time.Second {
			t.Errorf("the webhook's timeout (300 ms) took %v", el)
		}
		a = c.do("POST", "/whip", matrixRelayKey, "application/sdp", sdp)
		if a.status != 403 || a.code != "FORBIDDEN" {
			t.Errorf("WHIP with webhook %d: %d %s", tc.status, a.status, a.body)
		}
	}
	set(http.StatusOK, 0)
	// An unreachable webhook refuses too.
	hook.Close()
	if a := c.do("POST", "/v1/streams", tok, "application/json", `{"sdp":`+mustJSON(sdp)+`}`); a.status != 403 || !strings.Contains(a.body, "could not be reached") {
		t.Errorf("unreachable webhook: %d %s", a.status, a.body)
	}
}

// TestCORSOrigins: only the listed origins get CORS headers, reflected,
// with Vary: Origin; a pre-flight from another origin gets none.
func TestCORSOrigins(t *testing.T) {
	srv, _ := newServerWith(t, func(c *httpapi.Config) {
		c.APIKey, c.CORSOrigins = matrixAPIKey, []string{"https://app.example", "http://localhost:3000"}
	})
	c := client{t: t, url: srv.URL}
	for _, tc := range []struct {
		origin, want string
	}{
		{"https://app.example", "https://app.example"},
		{"HTTPS://APP.EXAMPLE", "HTTPS://APP.EXAMPLE"},
		{"http://localhost:3000", "http://localhost:3000"},
		{"https://evil.example", ""},
		{"https://app.example.evil.example", ""},
		{"http://app.example", ""},
		{"null", ""},
	} {
		pre := c.do("OPTIONS", "/v1/streams", "", "", "", "Origin", tc.origin, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization")
		get := c.do("GET", "/v1/streams", matrixAPIKey, "", "", "Origin", tc.origin)
		for what, a := range map[string]answer{"pre-flight": pre, "GET": get} {
			if got := a.header.Get("Access-Control-Allow-Origin"); got != tc.want {
				t.Errorf("%s from %s: Allow-Origin %q, want %q", what, tc.origin, got, tc.want)
			}
			if !strings.Contains(strings.Join(a.header.Values("Vary"), ","), "Origin") {
				t.Errorf("%s from %s: no Vary: Origin", what, tc.origin)
			}
			if tc.want == "" && (a.header.Get("Access-Control-Allow-Methods") != "" || a.header.Get("Access-Control-Expose-Headers") != "") {
				t.Errorf("%s from a refused origin %s: %v", what, tc.origin, a.header)
			}
		}
		if tc.want != "" && (pre.status != 204 || pre.header.Get("Access-Control-Allow-Methods") == "") {
			t.Errorf("pre-flight from %s: %d %v", tc.origin, pre.status, pre.header)
		}
	}
	// The default: no other origin at all.
	def := newServer(t, "")
	a := client{t: t, url: def.URL}.do("OPTIONS", "/whip", "", "", "", "Origin", "https://app.example", "Access-Control-Request-Method", "POST")
	if a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("default CORS allows another origin: %v", a.header)
	}
	if _, err := httpapi.ParseOrigins([]string{"https://app.example/path"}); err == nil {
		t.Error("an origin with a path is accepted")
	}
	if o, err := httpapi.ParseOrigins([]string{" https://App.Example ", "*"}); err != nil || len(o) != 2 || o[0] != "https://app.example" {
		t.Errorf("ParseOrigins: %v %v", o, err)
	}
}

// TestTokenRelay: a token's relay claim publishes to the named relay over
// WHIP (its operator-configured targets, here on loopback, which the
// token itself could not name), under the token's scope; an unknown relay
// name is 403.
func TestTokenRelay(t *testing.T) {
	srv, m := newServerWith(t, func(c *httpapi.Config) {
		v, err := auth.NewVerifier(auth.VerifierConfig{Key: []byte(matrixSecret)})
		if err != nil {
			t.Fatal(err)
		}
		c.APIKey, c.Tokens = matrixAPIKey, v
	}, func(g *gateway.Config) {
		g.Relays = []gateway.Relay{{Name: "studio", Key: matrixRelayKey, Targets: []rtmpout.Spec{{Output: "rtmp://127.0.0.1:1/live", StreamName: "relay-out"}}}}
	})
	c := client{t: t, url: srv.URL}
	sdp := offer(t)
	cl := claimsFor("alice", time.Hour)
	cl.Relay = "studio"
	loc := c.whip(sdp, mint(t, cl))
	s, err := m.Stream(strings.TrimPrefix(loc, "/whip/"))
	if err != nil || s.Scope() != "alice" || s.Name() != "alice" {
		t.Fatalf("relay session by token: %v %q %q", err, s.Scope(), s.Name())
	}
	// The session is the token's scope: another token of it drives it.
	if a := c.do("GET", "/v1/streams/"+s.ID(), mint(t, claimsFor("alice", time.Minute)), "", ""); a.status != 200 {
		t.Errorf("same scope, another token: %d %s", a.status, a.body)
	}
	cl.Relay = matrixRelayKey // by its key: works, though names are better
	if a := c.do("POST", "/whip", mint(t, cl), "application/sdp", sdp); a.status != 201 {
		t.Errorf("relay claim with the key: %d %s", a.status, a.body)
	}
	cl.Relay = "nope"
	if a := c.do("POST", "/whip", mint(t, cl), "application/sdp", sdp); a.status != 403 || a.code != "FORBIDDEN" || !strings.Contains(a.body, "relay claim") {
		t.Errorf("unknown relay name: %d %s", a.status, a.body)
	}
}

// TestAnyStreamToken: a token whose stream claim is "*" names its streams
// freely; the "*" tokens share their streams, named tokens do not get them.
func TestAnyStreamToken(t *testing.T) {
	srv, m := newServerWith(t, func(c *httpapi.Config) {
		v, err := auth.NewVerifier(auth.VerifierConfig{Key: []byte(matrixSecret)})
		if err != nil {
			t.Fatal(err)
		}
		c.APIKey, c.Tokens = matrixAPIKey, v
	})
	c := client{t: t, url: srv.URL}
	sdp := offer(t)
	anyTok := mint(t, claimsFor("*", time.Hour))
	a := c.do("POST", "/v1/streams", anyTok, "application/json", `{"sdp":`+mustJSON(sdp)+`,"name":"studio-7"}`)
	var made struct{ ID string }
	if a.status != 201 || json.Unmarshal([]byte(a.body), &made) != nil {
		t.Fatalf("any-stream token: %d %s", a.status, a.body)
	}
	if s, err := m.Stream(made.ID); err != nil || s.Name() != "studio-7" || s.Scope() != "*" {
		t.Fatalf("stream: %v", err)
	}
	if a := c.do("GET", "/v1/streams/"+made.ID, mint(t, claimsFor("*", time.Minute)), "", ""); a.status != 200 {
		t.Errorf("another * token: %d %s", a.status, a.body)
	}
	if a := c.do("GET", "/v1/streams/"+made.ID, mint(t, claimsFor("studio-7", time.Minute)), "", ""); a.status != 403 {
		t.Errorf("a token named after the stream: %d %s", a.status, a.body)
	}
}
