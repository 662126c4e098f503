package dtlssrtp

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v2"
	"github.com/pion/dtls/v2/pkg/crypto/selfsign"
	"github.com/pion/srtp/v2"
	"github.com/pion/transport/v2/dpipe"
)

// event is one datagram seen on "our" side of a handshake.
type event struct {
	inbound bool
	data    []byte
}

// tapConn is our side's socket wrapper: it feeds every datagram read to
// Inbound and every datagram written to Outbound, like the gateway's ICE
// socket wrapper, and records them for replays.
type tapConn struct {
	net.Conn
	sniffer *Sniffer

	mu     sync.Mutex
	events []event
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.record(true, p[:n])
		if c.sniffer != nil {
			c.sniffer.Inbound(p[:n])
		}
	}
	return n, err
}

func (c *tapConn) Write(p []byte) (int, error) {
	c.record(false, p)
	if c.sniffer != nil {
		c.sniffer.Outbound(p)
	}
	return c.Conn.Write(p)
}

func (c *tapConn) record(inbound bool, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, event{inbound: inbound, data: bytes.Clone(p)})
}

func (c *tapConn) recorded() []event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]event(nil), c.events...)
}

// lockedBuffer collects key-log output (pion writes it from its handshake
// goroutine).
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

var (
	certOnce       sync.Once
	certA, certB   tls.Certificate
	errCertGenFail error
)

func testCerts(t testing.TB) (tls.Certificate, tls.Certificate) {
	t.Helper()
	certOnce.Do(func() {
		if certA, errCertGenFail = selfsign.GenerateSelfSigned(); errCertGenFail != nil {
			return
		}
		certB, errCertGenFail = selfsign.GenerateSelfSigned()
	})
	if errCertGenFail != nil {
		t.Fatalf("self-signed certificate: %v", errCertGenFail)
	}
	return certA, certB
}

type handshakeOpts struct {
	weAreClient bool
	profile     dtls.SRTPProtectionProfile
	suite       dtls.CipherSuiteID
	ems         dtls.ExtendedMasterSecretType
	peerMTU     int       // 0: pion's default
	sniffer     *Sniffer  // nil: record only
	keyLog      io.Writer // where our side's key log goes; nil: none
}

type handshakeResult struct {
	ours, peer *dtls.Conn
	tap        *tapConn
}

// handshake runs a real pion/dtls handshake over an in-memory datagram pipe.
func handshake(t testing.TB, o handshakeOpts) handshakeResult {
	t.Helper()
	a, b := testCerts(t)
	ourRaw, peerRaw := dpipe.Pipe()
	tap := &tapConn{Conn: ourRaw, sniffer: o.sniffer}
	cfg := func(cert tls.Certificate) *dtls.Config {
		return &dtls.Config{
			Certificates:           []tls.Certificate{cert},
			CipherSuites:           []dtls.CipherSuiteID{o.suite},
			SRTPProtectionProfiles: []dtls.SRTPProtectionProfile{o.profile},
			ExtendedMasterSecret:   o.ems,
			InsecureSkipVerify:     true,
		}
	}
	ourCfg, peerCfg := cfg(a), cfg(b)
	if o.keyLog != nil {
		ourCfg.KeyLogWriter = o.keyLog
	}
	peerCfg.MTU = o.peerMTU

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type res struct {
		c   *dtls.Conn
		err error
	}
	peerCh := make(chan res, 1)
	go func() {
		var c *dtls.Conn
		var err error
		if o.weAreClient {
			c, err = dtls.ServerWithContext(ctx, peerRaw, peerCfg)
		} else {
			c, err = dtls.ClientWithContext(ctx, peerRaw, peerCfg)
		}
		peerCh <- res{c, err}
	}()
	var ours *dtls.Conn
	var err error
	if o.weAreClient {
		ours, err = dtls.ClientWithContext(ctx, tap, ourCfg)
	} else {
		ours, err = dtls.ServerWithContext(ctx, tap, ourCfg)
	}
	p := <-peerCh
	if err != nil || p.err != nil {
		if ours != nil {
			_ = ours.Close()
		}
		if p.c != nil {
			_ = p.c.Close()
		}
		_ = ourRaw.Close()
		_ = peerRaw.Close()
		t.Fatalf("handshake: ours %v, peer %v", err, p.err)
	}
	r := handshakeResult{ours: ours, peer: p.c, tap: tap}
	t.Cleanup(r.close)
	return r
}

// close ends both sides (idempotent, so also fine as a Cleanup after an
// explicit close).
func (r handshakeResult) close() {
	_ = r.ours.Close()
	_ = r.peer.Close()
}

// exported splits the stack's own exporter output the way pion/webrtc v3
// (srtp.Config.ExtractSessionKeysFromDTLS) does, for conn's point of view.
func exported(t testing.TB, c *dtls.Conn, isClient bool) Keys {
	t.Helper()
	state := c.ConnectionState()
	dp, ok := c.SelectedSRTPProtectionProfile()
	if !ok {
		t.Fatal("no SRTP protection profile negotiated")
	}
	profile := srtp.ProtectionProfile(dp)
	keyLen, err := profile.KeyLen()
	if err != nil {
		t.Fatal(err)
	}
	saltLen, err := profile.SaltLen()
	if err != nil {
		t.Fatal(err)
	}
	m, err := state.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 2*(keyLen+saltLen))
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	clientKey, serverKey := m[:keyLen], m[keyLen:2*keyLen]
	clientSalt, serverSalt := m[2*keyLen:2*keyLen+saltLen], m[2*keyLen+saltLen:]
	if isClient {
		return Keys{Profile: profile, LocalKey: clientKey, LocalSalt: clientSalt, RemoteKey: serverKey, RemoteSalt: serverSalt}
	}
	return Keys{Profile: profile, LocalKey: serverKey, LocalSalt: serverSalt, RemoteKey: clientKey, RemoteSalt: clientSalt}
}

func assertKeys(t testing.TB, got, want Keys) {
	t.Helper()
	if got.Profile != want.Profile {
		t.Errorf("profile %v, want %v", got.Profile, want.Profile)
	}
	for _, c := range []struct {
		name      string
		got, want []byte
	}{
		{"RemoteKey", got.RemoteKey, want.RemoteKey},
		{"RemoteSalt", got.RemoteSalt, want.RemoteSalt},
		{"LocalKey", got.LocalKey, want.LocalKey},
		{"LocalSalt", got.LocalSalt, want.LocalSalt},
	} {
		if len(c.want) == 0 || !bytes.Equal(c.got, c.want) {
			t.Errorf("%s = %x, want %x", c.name, c.got, c.want)
		}
	}
}

// replay feeds recorded datagrams and a key log to a fresh Sniffer.
func replay(events []event, keyLog []byte) *Sniffer {
	s := &Sniffer{}
	for _, e := range events {
		if e.inbound {
			s.Inbound(e.data)
		} else {
			s.Outbound(e.data)
		}
	}
	if keyLog != nil {
		_, _ = s.Write(keyLog)
	}
	return s
}
