// Package auth holds castbridge's access control that is not HTTP routing:
// scoped publish tokens (JWT) and the publish-authorization webhook. The
// API (package httpapi) decides what a request may do with what these
// return; the gateway never sees a token.
package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Limits of a token. A token longer than MaxTokenBytes is refused before
// it is decoded; one whose exp lies more than MaxLifetime ahead is refused
// (a "short-lived" token cannot be minted for a year by mistake); Leeway is
// the clock skew allowed on exp, nbf and iat.
const (
	MaxTokenBytes = 8 << 10
	MaxLifetime   = 24 * time.Hour
	Leeway        = 30 * time.Second
	// MaxStreamName bounds the stream claim.
	MaxStreamName = 256
	// MaxOutputs bounds the outputs claim.
	MaxOutputs = 32
)

// Claims are a publish token's claims.
//
//	stream   the stream name the token may create and then drive (required;
//	         "*": any name, and the streams of every "*" token are one scope)
//	outputs  hosts ("host" or "host:port") its broadcasts may push to
//	relay    a configured relay it may publish to over WHIP: its name (or
//	         its key, though a token is readable by whoever holds it)
//	scope    "publish" or absent (the one scope there is)
//	exp      expiry (required, at most MaxLifetime ahead)
//	sub, jti, iss, aud, nbf, iat as in RFC 7519
type Claims struct {
	Stream  string   `json:"stream"`
	Outputs []string `json:"outputs,omitempty"`
	Relay   string   `json:"relay,omitempty"`
	Scope   string   `json:"scope,omitempty"`
	jwt.RegisteredClaims
}

// AnyStream is the stream claim of a token that may name its streams.
const AnyStream = "*"

// Errors of Verify; their texts are safe to show the caller.
var (
	ErrExpired  = errors.New("the token has expired: mint a new one")
	ErrInvalid  = errors.New("the token is not valid: bad signature, algorithm or claims")
	ErrLifetime = fmt.Errorf("the token's exp is more than %v ahead: publish tokens are short-lived", MaxLifetime)
	ErrClaims   = errors.New("the token's claims are not valid: it needs a stream claim, and scope (if any) must be \"publish\"")
)

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Key is either an HMAC secret (HS256, at least 32 bytes) or a PEM
	// public key (ES256 for P-256 keys, EdDSA for Ed25519, RS256 for RSA
	// of at least 2048 bits), as PEMKey says.
	Key    []byte
	PEMKey bool
	// Audience and Issuer, when set, must be the token's aud and iss.
	Audience string
	Issuer   string
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Verifier checks publish tokens. It accepts exactly one algorithm, the
// key's: never "none", never an HMAC token checked with a public key.
type Verifier struct {
	key    any
	alg    string
	parser *jwt.Parser
	now    func() time.Time
}

// NewVerifier parses the key and fixes the accepted algorithm.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	v := &Verifier{now: cfg.Now}
	if v.now == nil {
		v.now = time.Now
	}
	if !cfg.PEMKey {
		if len(cfg.Key) < 32 {
			return nil, errors.New("token key: an HMAC secret needs at least 32 bytes (256 bits)")
		}
		v.key, v.alg = cfg.Key, jwt.SigningMethodHS256.Alg()
	} else {
		block, _ := pem.Decode(cfg.Key)
		if block == nil {
			return nil, errors.New("token key: not a PEM file")
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("token key: not a PEM public key (PKIX): %w", err)
		}
		switch k := pub.(type) {
		case *ecdsa.PublicKey:
			if k.Curve != elliptic.P256() {
				return nil, errors.New("token key: an ECDSA key must be on P-256 (ES256)")
			}
			v.key, v.alg = k, jwt.SigningMethodES256.Alg()
		case ed25519.PublicKey:
			v.key, v.alg = k, jwt.SigningMethodEdDSA.Alg()
		case *rsa.PublicKey:
			if k.N.BitLen() < 2048 {
				return nil, errors.New("token key: an RSA key needs at least 2048 bits")
			}
			v.key, v.alg = k, jwt.SigningMethodRS256.Alg()
		default:
			return nil, fmt.Errorf("token key: unsupported public key type %T", pub)
		}
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{v.alg}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(Leeway),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(), // one serialization per token: no padding or trailing-bit variants
		jwt.WithTimeFunc(v.now),
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Alg is the one algorithm the verifier accepts.
func (v *Verifier) Alg() string { return v.alg }

// LooksLikeToken: s has a JWS compact serialization's shape (three
// base64url parts), so it is verified as a token rather than compared as
// a key.
func LooksLikeToken(s string) bool {
	if len(s) > MaxTokenBytes || strings.Count(s, ".") != 2 {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// Verify checks a token's signature, algorithm and claims and returns them.
// The error is one of ErrExpired, ErrInvalid, ErrLifetime, ErrClaims.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if !LooksLikeToken(token) {
		return nil, ErrInvalid
	}
	var c Claims
	_, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		if t.Method.Alg() != v.alg { // WithValidMethods says so too; twice is cheap
			return nil, ErrInvalid
		}
		return v.key, nil
	})
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, ErrExpired
	case err != nil:
		return nil, ErrInvalid
	}
	if c.ExpiresAt.Sub(v.now()) > MaxLifetime+Leeway {
		return nil, ErrLifetime
	}
	if c.Stream == "" || len(c.Stream) > MaxStreamName || len(c.Outputs) > MaxOutputs || len(c.Relay) > MaxStreamName ||
		(c.Scope != "" && c.Scope != "publish") {
		return nil, ErrClaims
	}
	return &c, nil
}
