package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/format/flv/flvtest"
	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

// TestRTMPInOptions: the RTMPS and resume flags are checked.
func TestRTMPInOptions(t *testing.T) {
	o, err := parseOptions(nil, func(k string) string { return map[string]string{"CASTBRIDGE_RTMP_RESUME": "2s"}[k] }, io.Discard)
	if err != nil || o.rtmpResume != 2*time.Second || o.rtmpsIngest != "127.0.0.1:1936" {
		t.Fatalf("options %+v %v", o, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rtmps-cert", "x.pem"}, "--rtmps-key"},
		{[]string{"--rtmps-cert", "missing.pem", "--rtmps-key", "missing.pem"}, "--rtmps-cert/--rtmps-key"},
		{[]string{"--rtmp-resume", "-1s"}, "--rtmp-resume"},
	} {
		err := run(context.Background(), append(tc.args, "--local-ingest", "127.0.0.1:0", "--recordings-dir", t.TempDir()), func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %v: %v, want an error naming %s", tc.args, err, tc.want)
		}
	}
}

// writeCert writes a server certificate and key as PEM files.
func writeCert(t *testing.T, dir string, cert tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	der, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestRTMPInBinary runs the binary with a relay whose target is its own
// ingest (recording, behind --local-ingest-key): an RTMPS publish with the
// relay key is relayed and recorded, a name that is no key is refused, and
// neither key shows in the log.
func TestRTMPInBinary(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	st := flvtest.GenerateH264(t, 2)
	ca, err := gatewaytest.NewPrivateCA()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, ca.Server)
	ingestAddr, rtmpsAddr, httpAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	cfg := filepath.Join(dir, "castbridge.yaml")
	if err := os.WriteFile(cfg, []byte("relays:\n  - key: relay-key-31\n    targets:\n      - output: rtmp://"+ingestAddr+"/live/relayed?key=local-key-5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(dir, "rec")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var logs gatewaytest.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--http-addr", httpAddr, "--ice-udp-port", "0", "--ice-ips", "127.0.0.1", "--config", cfg,
			"--local-ingest", ingestAddr, "--local-ingest-key", "local-key-5", "--recordings-dir", rec, "--log-level", "debug",
			"--rtmps-cert", certFile, "--rtmps-key", keyFile, "--rtmps-ingest", rtmpsAddr},
			func(string) string { return "" }, &logs)
	}()
	dial := func(name string) (*rtmppush.Publisher, error) {
		ep, err := rtmppush.ParseEndpoint("rtmps://"+rtmpsAddr+"/live/"+name, "")
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			p, err := rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: ep, TLSConfig: &tls.Config{RootCAs: ca.Pool}})
			var rej *rtmppush.RejectedError
			if err == nil || errors.As(err, &rej) || i > 100 {
				return p, err
			}
			time.Sleep(50 * time.Millisecond) // not listening yet
		}
	}
	var rej *rtmppush.RejectedError
	if _, err := dial("not-a-key"); !errors.As(err, &rej) || rej.Code != "NetStream.Publish.BadName" {
		t.Fatalf("publish with no relay's key: %v, want BadName", err)
	}
	p, err := dial("relay-key-31")
	if err != nil {
		t.Fatalf("publish with the relay key: %v", err)
	}
	seq, _ := flv.AppendAVCSequenceHeader(nil, st.SPS, st.PPS)
	if err := p.WriteVideo(0, seq); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i, au := range st.Units {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / 30)))
		if err := p.WriteVideo(uint32(i*1000/30), flv.AppendAVCNALUs(nil, au.NALUs, au.Keyframe, 0)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the stream ends, its target unpublishes
	stopRun(t, stop, done)
	if pr := flvtest.ProbeVideo(t, filepath.Join(rec, "relayed.flv")); pr.CodecName != "h264" || pr.Frames != len(st.Units) {
		t.Errorf("the relayed recording: %+v, want %d H.264 frames", pr, len(st.Units))
	}
	if s := logs.String(); strings.Contains(s, "relay-key") || strings.Contains(s, "local-key") {
		t.Fatalf("a key is in the logs:\n%s", s)
	}
}
