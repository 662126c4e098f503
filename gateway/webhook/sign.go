package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

// signaturePrefix starts the X-Castbridge-Signature header (API.md).
const signaturePrefix = "sha256="

// Sign returns the X-Castbridge-Signature header of body: "sha256=" and
// the hex HMAC-SHA256 of the body, keyed with the secret's bytes (API.md).
func Sign(secret string, body []byte) string {
	return signaturePrefix + hex.EncodeToString(mac(secret, body))
}

func mac(secret string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return m.Sum(nil)
}

// Errors of Verify.
var (
	ErrBadSignatureHeader = errors.New("webhook: malformed " + SignatureHeader + " header")
	ErrSignatureMismatch  = errors.New("webhook: the signature does not match the body")
)

// Verify checks a request's X-Castbridge-Signature header against its raw
// body (the bytes as received, before any JSON parsing) and the secret,
// in constant time. Receivers in other languages do the same: HMAC-SHA256
// of the body with the secret, in hex, after "sha256=". Against replays a
// receiver keeps the ids it has seen (a retry repeats its id) and refuses
// bodies whose "at" is far from its clock.
func Verify(secret, header string, body []byte) error {
	hexSig, ok := strings.CutPrefix(header, signaturePrefix)
	if !ok || len(hexSig) != 2*sha256.Size {
		return ErrBadSignatureHeader
	}
	sig, err := hex.DecodeString(hexSig)
	if err != nil {
		return ErrBadSignatureHeader
	}
	if !hmac.Equal(sig, mac(secret, body)) {
		return ErrSignatureMismatch
	}
	return nil
}
