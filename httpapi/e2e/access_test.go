package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/httpapi/auth"
)

// TestScopedTokenPublish: a browser app's publish token (minted by its
// backend) publishes over WHIP, broadcasts to the one ingest host its
// outputs claim names (opened for tokens by --allow-outputs, as loopback
// is refused to them otherwise), is refused any other host, and ends its
// own session; frames reach the ingest through the token's policy.
func TestScopedTokenPublish(t *testing.T) {
	parallel(t, light)
	secret := []byte("e2e-publish-token-secret-of-32-bytes!")
	const apiKey = "e2e-master-key"
	h := newHarness(t, harnessOptions{apiKey: apiKey, tokenKey: secret, allowOutputs: []string{"127.0.0.1"}})
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, auth.Claims{Stream: "alice", Outputs: []string{"127.0.0.1"},
		RegisteredClaims: jwt.RegisteredClaims{Subject: "user-1", ExpiresAt: jwt.NewNumericDate(time.Now().Add(5 * time.Minute))}}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, err := gatewaytest.NewPublisher(gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"),
		SeparateParameterSets: true, NoSenderReports: true, Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	id, st := h.whipPublish(ctx, "/whip", tok, pub)
	if st != http.StatusCreated {
		t.Fatalf("WHIP with a publish token: %d", st)
	}
	pub.Start(ctx)
	for deadline := time.Now().Add(10 * time.Second); ; { // the token reads its own stream
		st, body := do("GET", "/v1/streams/"+id, "")
		var v struct{ State string }
		if st == http.StatusOK && json.Unmarshal([]byte(body), &v) == nil && v.State == "connected" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s not connected: %d %s", id, st, body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Another host than the claim's: outside its claims, 403 (API.md),
	// nothing dialed.
	if st, body := do("POST", "/v1/streams/"+id+"/broadcast", `{"transcodingTargets":{"output":"rtmp://localhost:1935/live/KEY"}}`); st != 403 || !strings.Contains(body, "FORBIDDEN") ||
		!strings.Contains(body, "not among the output hosts this token allows") || strings.Contains(body, "KEY") {
		t.Errorf("unlisted host: %d %s", st, body)
	}
	body, _ := json.Marshal(map[string]any{"transcodingTargets": map[string]any{"output": h.ingestURL() + "/scoped"}})
	if st, body := do("POST", "/v1/streams/"+id+"/broadcast", string(body)); st != http.StatusCreated {
		t.Fatalf("broadcast with the token: %d %s", st, body)
	}
	if n := h.waitFrames("scoped", 30, 10*time.Second); n < 30 {
		t.Fatalf("the ingest got %d video frames through the token's policy", n)
	}
	// Its own WHIP session: ended with the same token.
	if st, body := do("DELETE", "/whip/"+id, ""); st != http.StatusOK {
		t.Fatalf("DELETE its own session: %d %s", st, body)
	}
	if _, err := h.m.Stream(id); err == nil {
		t.Error("the session is still there")
	}
}
