package rtmpout

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
)

// TestLoadRootCAs: the file's CA joins the system's roots, so a server
// certificate it issued verifies; a file without a certificate is refused.
func TestLoadRootCAs(t *testing.T) {
	ca, err := gatewaytest.NewPrivateCA()
	if err != nil {
		t.Fatal(err)
	}
	leaf := ca.Server.Leaf
	if _, err := leaf.Verify(x509.VerifyOptions{}); err == nil {
		t.Fatal("the system already trusts the test's private CA: the test proves nothing")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "ca.pem")
	// A key block before the certificate is skipped, as in bundles.
	pemData := append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"), ca.CertPEM...)
	if err := os.WriteFile(file, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	pool, err := LoadRootCAs(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Errorf("a certificate of the loaded CA does not verify: %v", err)
	}
	if sys, err := x509.SystemCertPool(); err == nil && !sys.Equal(x509.NewCertPool()) && pool.Equal(ca.Pool) {
		t.Error("the system's roots were dropped: the pool holds the file's CA alone")
	}

	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRootCAs(empty); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a file without certificates: %v", err)
	}
	if _, err := LoadRootCAs(filepath.Join(dir, "missing.pem")); err == nil {
		t.Error("a missing file must be an error")
	}
}
