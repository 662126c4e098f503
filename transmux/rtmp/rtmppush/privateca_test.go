package rtmppush_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

// privateCA issues a server certificate for 127.0.0.1 from a CA of its own
// and returns the certificate and a pool holding the CA alone (not the
// leaf: the chain is verified).
func privateCA(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "private CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "ingest"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// tlsFront terminates TLS with cert and forwards every connection to
// upstream until the test ends.
func tlsFront(t *testing.T, cert tls.Certificate, upstream string) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				up, err := net.Dial("tcp", upstream)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, up)
			})
		}
	})
	return ln.Addr().String()
}

// TestRTMPSPrivateCA: an ingest whose certificate a private CA issued is
// refused with the system's roots, naming the certificate problem; with
// the CA among the roots the publish goes through and media arrives; the
// host name is still checked.
func TestRTMPSPrivateCA(t *testing.T) {
	o, addr := startIngest(t, nil)
	cert, pool := privateCA(t)
	front := tlsFront(t, cert, addr)
	_, port, _ := net.SplitHostPort(front)
	ep := endpoint(t, "rtmps://127.0.0.1:"+port+"/live/secret-key")

	_, err := rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: ep, DialTimeout: 2 * time.Second})
	var unknown x509.UnknownAuthorityError
	if !errors.Is(err, rtmppush.ErrUnreachable) || !errors.As(err, &unknown) {
		t.Fatalf("system roots only: err = %v, want ErrUnreachable from x509.UnknownAuthorityError", err)
	}
	if !strings.Contains(err.Error(), "certificate signed by unknown authority") || strings.Contains(err.Error(), "secret-key") {
		t.Errorf("error %q: want the certificate problem named and the stream key left out", err)
	}

	// The same CA, but the URL names a host the certificate is not for.
	other := endpoint(t, "rtmps://localhost:"+port+"/live/secret-key")
	_, err = rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: other, DialTimeout: 2 * time.Second, TLSConfig: &tls.Config{RootCAs: pool}})
	var host x509.HostnameError
	if !errors.As(err, &host) {
		t.Errorf("a certificate for 127.0.0.1 reached as localhost: err = %v, want x509.HostnameError", err)
	}

	p, err := rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: ep, DialTimeout: 2 * time.Second, TLSConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatalf("with the private CA: %v", err)
	}
	if err := p.WriteVideo(9, []byte{0x17, 1, 0, 0, 0, 0xAB}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "video over TLS from a private CA", func() bool {
		_, m, _ := o.snapshot()
		return len(m) == 1 && m[0].Timestamp == 9 && len(m[0].Body) == 6 && m[0].Body[5] == 0xAB
	})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}
