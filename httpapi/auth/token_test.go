package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const secret = "an-hmac-secret-of-at-least-32-bytes!!"

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func claims(exp time.Duration) Claims {
	return Claims{Stream: "alice", Outputs: []string{"a.rtmp.example"}, RegisteredClaims: jwt.RegisteredClaims{
		Subject: "u1", ExpiresAt: jwt.NewNumericDate(now.Add(exp)), IssuedAt: jwt.NewNumericDate(now)}}
}

func sign(t testing.TB, m jwt.SigningMethod, key any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func hmacVerifier(t testing.TB, aud, iss string) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierConfig{Key: []byte(secret), Audience: aud, Issuer: iss, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func pemOf(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestVerifyHS256(t *testing.T) {
	v := hmacVerifier(t, "", "")
	c, err := v.Verify(sign(t, jwt.SigningMethodHS256, []byte(secret), claims(time.Hour)))
	if err != nil || c.Stream != "alice" || c.Subject != "u1" || len(c.Outputs) != 1 || c.Outputs[0] != "a.rtmp.example" {
		t.Fatalf("good token: %+v %v", c, err)
	}
	noExp := claims(time.Hour)
	noExp.ExpiresAt = nil
	future := claims(time.Hour)
	future.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour))
	noStream := claims(time.Hour)
	noStream.Stream = ""
	badScope := claims(time.Hour)
	badScope.Scope = "admin"
	notYet := claims(time.Hour)
	notYet.NotBefore = jwt.NewNumericDate(now.Add(time.Minute))
	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"expired", sign(t, jwt.SigningMethodHS256, []byte(secret), claims(-time.Minute)), ErrExpired},
		{"expired within the leeway is good", "", nil},
		{"no exp", sign(t, jwt.SigningMethodHS256, []byte(secret), noExp), ErrInvalid},
		{"exp past 24 h", sign(t, jwt.SigningMethodHS256, []byte(secret), claims(25*time.Hour)), ErrLifetime},
		{"iat in the future", sign(t, jwt.SigningMethodHS256, []byte(secret), future), ErrInvalid},
		{"nbf in the future", sign(t, jwt.SigningMethodHS256, []byte(secret), notYet), ErrInvalid},
		{"no stream", sign(t, jwt.SigningMethodHS256, []byte(secret), noStream), ErrClaims},
		{"scope admin", sign(t, jwt.SigningMethodHS256, []byte(secret), badScope), ErrClaims},
		{"other secret", sign(t, jwt.SigningMethodHS256, []byte(secret+"x"), claims(time.Hour)), ErrInvalid},
		{"HS512", sign(t, jwt.SigningMethodHS512, []byte(secret), claims(time.Hour)), ErrInvalid},
		{"none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(time.Hour)), ErrInvalid},
		{"garbage", "a.b.c", ErrInvalid},
		{"not a token", "api-key", ErrInvalid},
		{"too long", strings.Repeat("a", MaxTokenBytes) + ".b.c", ErrInvalid},
	} {
		if tc.token == "" {
			tc.token = sign(t, jwt.SigningMethodHS256, []byte(secret), claims(-10*time.Second))
		}
		if _, err := v.Verify(tc.token); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// A short secret is refused at start.
	if _, err := NewVerifier(VerifierConfig{Key: []byte("short")}); err == nil {
		t.Error("a 5-byte HMAC secret is accepted")
	}
}

func TestVerifyAudienceIssuer(t *testing.T) {
	v := hmacVerifier(t, "castbridge", "https://app.example")
	c := claims(time.Hour)
	if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, []byte(secret), c)); !errors.Is(err, ErrInvalid) {
		t.Errorf("no aud/iss: %v", err)
	}
	c.Audience, c.Issuer = jwt.ClaimStrings{"castbridge"}, "https://app.example"
	if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, []byte(secret), c)); err != nil {
		t.Errorf("right aud/iss: %v", err)
	}
	c.Audience = jwt.ClaimStrings{"other"}
	if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, []byte(secret), c)); !errors.Is(err, ErrInvalid) {
		t.Errorf("wrong aud: %v", err)
	}
}

// TestVerifyPublicKeys: each key type takes its one algorithm; an HMAC
// token "signed" with the public key's PEM (alg confusion) is refused.
func TestVerifyPublicKeys(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tc := range []struct {
		name   string
		pub    any
		m      jwt.SigningMethod
		priv   any
		wrongM jwt.SigningMethod
		wrongK any
	}{
		{"ES256", &ec.PublicKey, jwt.SigningMethodES256, ec, jwt.SigningMethodES384, mustEC(t, elliptic.P384())},
		{"EdDSA", edPub, jwt.SigningMethodEdDSA, edPriv, jwt.SigningMethodRS256, rs},
		{"RS256", &rs.PublicKey, jwt.SigningMethodRS256, rs, jwt.SigningMethodPS256, rs},
	} {
		pemKey := pemOf(t, tc.pub)
		v, err := NewVerifier(VerifierConfig{Key: pemKey, PEMKey: true, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if v.Alg() != tc.name {
			t.Errorf("%s: alg %s", tc.name, v.Alg())
		}
		if _, err := v.Verify(sign(t, tc.m, tc.priv, claims(time.Hour))); err != nil {
			t.Errorf("%s: good token: %v", tc.name, err)
		}
		if _, err := v.Verify(sign(t, tc.wrongM, tc.wrongK, claims(time.Hour))); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %s token: %v", tc.name, tc.wrongM.Alg(), err)
		}
		if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, pemKey, claims(time.Hour))); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: HS256 with the public key as secret: %v", tc.name, err)
		}
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := NewVerifier(VerifierConfig{Key: pemOf(t, &small.PublicKey), PEMKey: true}); err == nil {
		t.Error("a 1024-bit RSA key is accepted")
	}
	if _, err := NewVerifier(VerifierConfig{Key: pemOf(t, &mustEC(t, elliptic.P384()).PublicKey), PEMKey: true}); err == nil {
		t.Error("a P-384 key is accepted for ES256")
	}
	if _, err := NewVerifier(VerifierConfig{Key: []byte("not pem"), PEMKey: true}); err == nil {
		t.Error("a non-PEM key is accepted")
	}
}

func mustEC(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// FuzzVerify: whatever the bearer token, Verify returns claims only for a
// token signed with the secret, and never panics.
func FuzzVerify(f *testing.F) {
	v := hmacVerifier(f, "", "")
	good := sign(f, jwt.SigningMethodHS256, []byte(secret), claims(time.Hour))
	f.Add(good)
	f.Add(sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(time.Hour)))
	f.Add("eyJhbGciOiJIUzI1NiJ9.e30.")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(tok)
		if err == nil && (c == nil || c.Stream == "" || c.ExpiresAt == nil) {
			t.Fatalf("accepted %q with claims %+v", tok, c)
		}
		if err == nil && tok != good {
			// Another serialization of a good token (base64 padding
			// variants are refused by the parser): it must carry the
			// same signature bytes.
			if strings.Split(tok, ".")[2] != strings.Split(good, ".")[2] {
				t.Fatalf("accepted a token not signed by us: %q", tok)
			}
		}
		_ = LooksLikeToken(tok)
	})
}
