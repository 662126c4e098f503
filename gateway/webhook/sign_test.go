package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// verifyLikeAReceiver is the recipe of the README, written out without
// this package: what a backend in any language does.
func verifyLikeAReceiver(secret, header string, body []byte) bool {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "." + string(body)))
	want := hex.EncodeToString(m.Sum(nil))
	return hmac.Equal([]byte(sig), []byte(want))
}

func TestSignVerify(t *testing.T) {
	body := []byte(`{"id":"evt_1","stream":"st_1","seq":1,"event":"StreamClosed","time":"2026-12-01T12:00:00Z","data":{"streamId":"st_1"}}`)
	now := time.Unix(1_800_000_000, 0)
	h := Sign("s3cret", now, body)
	if !strings.HasPrefix(h, "t=1800000000,v1=") || len(h) != len("t=1800000000,v1=")+64 {
		t.Fatalf("header %q", h)
	}
	// A known answer, so a change of the scheme cannot pass unnoticed:
	// printf '1800000000.%s' "$body" | openssl dgst -sha256 -hmac s3cret
	m := hmac.New(sha256.New, []byte("s3cret"))
	m.Write([]byte("1800000000." + string(body)))
	if want := "t=1800000000,v1=" + hex.EncodeToString(m.Sum(nil)); h != want {
		t.Fatalf("Sign = %q, want %q", h, want)
	}
	if !verifyLikeAReceiver("s3cret", h, body) {
		t.Error("the README's recipe does not verify the signature")
	}
	if err := Verify("s3cret", h, body, now.Add(time.Minute), 0); err != nil {
		t.Errorf("Verify: %v", err)
	}
	tampered := append([]byte(nil), body...)
	tampered[len(tampered)-3] = 'X'
	for name, c := range map[string]struct {
		secret, header string
		body           []byte
		now            time.Time
		want           error
	}{
		"tampered body":       {"s3cret", h, tampered, now, ErrSignatureMismatch},
		"wrong secret":        {"other", h, body, now, ErrSignatureMismatch},
		"replayed later":      {"s3cret", h, body, now.Add(6 * time.Minute), ErrTimestampTooOld},
		"from the future":     {"s3cret", h, body, now.Add(-6 * time.Minute), ErrTimestampTooOld},
		"moved timestamp":     {"s3cret", strings.Replace(h, "t=1800000000", "t=1800000001", 1), body, now, ErrSignatureMismatch},
		"no signature":        {"s3cret", "t=1800000000", body, now, ErrBadSignatureHeader},
		"no timestamp":        {"s3cret", h[len("t=1800000000,"):], body, now, ErrBadSignatureHeader},
		"two timestamps":      {"s3cret", "t=1," + h, body, now, ErrBadSignatureHeader},
		"short signature":     {"s3cret", "t=1800000000,v1=abcd", body, now, ErrBadSignatureHeader},
		"not hex":             {"s3cret", "t=1800000000,v1=" + strings.Repeat("zz", 32), body, now, ErrBadSignatureHeader},
		"empty":               {"s3cret", "", body, now, ErrBadSignatureHeader},
		"oversized header":    {"s3cret", h + strings.Repeat(",v2=x", 300), body, now, ErrBadSignatureHeader},
		"garbage part":        {"s3cret", h + ",junk", body, now, ErrBadSignatureHeader},
		"huge timestamp":      {"s3cret", "t=9223372036854775807,v1=" + strings.Repeat("00", 32), body, now, ErrTimestampTooOld},
		"non-numeric instant": {"s3cret", "t=soon,v1=" + strings.Repeat("00", 32), body, now, ErrBadSignatureHeader},
	} {
		if err := Verify(c.secret, c.header, c.body, c.now, 0); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	// Rotation: a header with the old and the new secret's signatures
	// verifies under either.
	both := h + ",v1=" + Sign("new", now, body)[len("t=1800000000,v1="):]
	for _, secret := range []string{"s3cret", "new"} {
		if err := Verify(secret, both, body, now, 0); err != nil {
			t.Errorf("rotation, %s: %v", secret, err)
		}
	}
	// An unknown scheme beside v1 is skipped.
	if err := Verify("s3cret", h+",v2=whatever", body, now, 0); err != nil {
		t.Errorf("with a v2: %v", err)
	}
	if err := Verify("s3cret", h, body, now.Add(30*time.Second), 10*time.Second); !errors.Is(err, ErrTimestampTooOld) {
		t.Errorf("tolerance 10 s, 30 s late: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	body := []byte(`{"id":"evt_1"}`)
	now := time.Unix(1_800_000_000, 0)
	f.Add(Sign("k", now, body), body)
	f.Add("t=1800000000,v1=00,v1=", []byte{})
	f.Add("t=,v1=zz,,=", []byte("x"))
	f.Fuzz(func(t *testing.T, header string, b []byte) {
		err := Verify("k", header, b, now, 0)
		if err == nil {
			// Accepted: it must hold the HMAC of its own timestamp and b.
			var ts string
			for part := range strings.SplitSeq(header, ",") {
				if k, v, _ := strings.Cut(strings.TrimSpace(part), "="); k == "t" {
					ts = v
				}
			}
			if !strings.Contains(header, "v1="+hex.EncodeToString(mac("k", ts, b))) {
				t.Fatalf("%q verified %q without its signature", header, b)
			}
		}
		if err != nil && !errors.Is(err, ErrBadSignatureHeader) && !errors.Is(err, ErrSignatureMismatch) && !errors.Is(err, ErrTimestampTooOld) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}
