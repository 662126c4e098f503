package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// DefaultTolerance is how far a signature's timestamp may be from the
// receiver's clock (Verify): older requests are replays or stuck retries.
const DefaultTolerance = 5 * time.Minute

// maxSignatureHeader bounds what Verify parses.
const maxSignatureHeader = 1024

// Sign returns the Castbridge-Signature header of body sent at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<unix seconds>.<body>">", the
// key being the secret's bytes.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Errors of Verify.
var (
	ErrBadSignatureHeader = errors.New("webhook: malformed " + SignatureHeader + " header")
	ErrSignatureMismatch  = errors.New("webhook: no signature matches the body")
	ErrTimestampTooOld    = errors.New("webhook: signature timestamp outside the tolerance")
)

// Verify checks a request's Castbridge-Signature header against its raw
// body (the bytes as received, before any JSON parsing) and the secret:
// one of its v1 values must be the HMAC of "<t>.<body>" (more than one
// v1 lets a receiver see a request during a secret rotation), and t must
// be within tolerance of now (0: DefaultTolerance). Receivers in other
// languages do the same: split the header on ",", take t and the v1
// values, compute HMAC-SHA256(secret, t + "." + body) in hex and compare
// in constant time.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if len(header) > maxSignatureHeader {
		return ErrBadSignatureHeader
	}
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrBadSignatureHeader
		}
		switch k {
		case "t":
			if ts != "" {
				return ErrBadSignatureHeader
			}
			ts = v
		case "v1":
			sig, err := hex.DecodeString(v)
			if err != nil || len(sig) != sha256.Size {
				return ErrBadSignatureHeader
			}
			sigs = append(sigs, sig)
		}
		// Other schemes (a future v2) are skipped.
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrBadSignatureHeader
	}
	at := time.Unix(sec, 0)
	if d := now.Sub(at); d > tolerance || d < -tolerance {
		return ErrTimestampTooOld
	}
	want := mac(secret, ts, body)
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			return nil
		}
	}
	return ErrSignatureMismatch
}
