package rtmpout

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// LoadRootCAs returns the system's root CAs (which SSL_CERT_FILE and
// SSL_CERT_DIR replace) plus the PEM certificates in file, for rtmps://
// ingests behind a private CA or a self-signed certificate. A file with no
// certificate, or one that does not parse, is an error: a CA silently
// missing would show only later, as an untrusted ingest.
func LoadRootCAs(file string) (*x509.CertPool, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("rtmps CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	n := 0
	for rest := raw; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("rtmps CA file %s: certificate %d: %w", file, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("rtmps CA file %s: no PEM certificate in it", file)
	}
	return pool, nil
}
