package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// TestSignVerify: the header is API.md's "sha256=<hex HMAC of the body>",
// computed independently here; Verify takes it, and refuses other secrets,
// other bodies and malformed headers.
func TestSignVerify(t *testing.T) {
	body := []byte(`{"id":"evt_1","stream":"st_1","seq":1,"event":"StreamClosed","at":"2026-12-01T12:00:00Z","data":{"streamId":"st_1"}}`)
	h := Sign("s3cret", body)
	m := hmac.New(sha256.New, []byte("s3cret"))
	m.Write(body)
	if want := "sha256=" + hex.EncodeToString(m.Sum(nil)); h != want {
		t.Fatalf("Sign = %q, want %q", h, want)
	}
	if err := Verify("s3cret", h, body); err != nil {
		t.Fatalf("Verify of its own signature: %v", err)
	}
	for name, c := range map[string]struct {
		secret, header string
		body           []byte
		want           error
	}{
		"other secret":    {"other", h, body, ErrSignatureMismatch},
		"other body":      {"s3cret", h, append([]byte(" "), body...), ErrSignatureMismatch},
		"no prefix":       {"s3cret", h[len("sha256="):], body, ErrBadSignatureHeader},
		"other algorithm": {"s3cret", "sha1=" + h[len("sha256="):], body, ErrBadSignatureHeader},
		"short":           {"s3cret", "sha256=abcd", body, ErrBadSignatureHeader},
		"not hex":         {"s3cret", "sha256=" + strings.Repeat("zz", 32), body, ErrBadSignatureHeader},
		"empty":           {"s3cret", "", body, ErrBadSignatureHeader},
		"oversized":       {"s3cret", h + strings.Repeat("0", 4096), body, ErrBadSignatureHeader},
	} {
		if err := Verify(c.secret, c.header, c.body); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

// FuzzVerify: no header makes Verify accept a body it did not sign, or
// panic.
func FuzzVerify(f *testing.F) {
	body := []byte(`{"event":"StreamClosed"}`)
	f.Add(Sign("k", body), body)
	f.Add("sha256=", []byte{})
	f.Add("", []byte("x"))
	f.Fuzz(func(t *testing.T, header string, b []byte) {
		err := Verify("k", header, b)
		// Hex digits may come in either case; nothing else may differ.
		if err == nil && !strings.EqualFold(header, Sign("k", b)) {
			t.Fatalf("Verify accepted %q for a body it does not sign", header)
		}
	})
}
