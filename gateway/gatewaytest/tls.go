package gatewaytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"time"
)

// PrivateCA is a certificate authority of the test's own and a server
// certificate it issued for 127.0.0.1 and ::1: an ingest behind a private
// or corporate CA that no system trusts.
type PrivateCA struct {
	CertPEM []byte          // the CA's certificate, PEM
	Pool    *x509.CertPool  // the CA alone
	Server  tls.Certificate // issued by the CA for 127.0.0.1 and ::1
}

// NewPrivateCA makes a CA and a server certificate, valid for an hour.
func NewPrivateCA() (*PrivateCA, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "castbridge test private CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("gatewaytest: CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "ingest.test"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("gatewaytest: server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &PrivateCA{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		Pool:    pool,
		Server:  tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
	}, nil
}

// TLSFront terminates TLS on a loopback port and forwards every
// connection to a plain TCP upstream, as a TLS-terminating proxy in front
// of an RTMP ingest does (rtmps:// to rtmp://).
type TLSFront struct {
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// NewTLSFront listens on 127.0.0.1 with cert.
func NewTLSFront(cert tls.Certificate, upstream string) (*TLSFront, error) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		return nil, err
	}
	f := &TLSFront{ln: ln, upstream: upstream, conns: map[net.Conn]struct{}{}}
	f.wg.Go(f.accept)
	return f, nil
}

// Addr is the TLS address, host:port.
func (f *TLSFront) Addr() string { return f.ln.Addr().String() }

// Close stops accepting, cuts every forwarded connection and waits for the
// forwarding goroutines.
func (f *TLSFront) Close() error {
	err := f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		_ = c.Close()
	}
	f.conns = nil // no more
	f.mu.Unlock()
	f.wg.Wait()
	return err
}

func (f *TLSFront) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns == nil {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *TLSFront) accept() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Go(func() { f.forward(c) })
	}
}

func (f *TLSFront) forward(c net.Conn) {
	defer c.Close()
	// The handshake fails when the client does not trust the certificate.
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.(*tls.Conn).Handshake(); err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	up, err := net.DialTimeout("tcp", f.upstream, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	if !f.track(c) || !f.track(up) {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(up, c)
		_ = up.(*net.TCPConn).CloseWrite()
	}()
	if _, err := io.Copy(c, up); err != nil && !errors.Is(err, net.ErrClosed) {
		_ = c.Close()
	}
	_ = c.Close()
	<-done
	f.mu.Lock()
	delete(f.conns, c)
	delete(f.conns, up)
	f.mu.Unlock()
}
