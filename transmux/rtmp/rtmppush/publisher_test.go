package rtmppush_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/format/flv/flvtest"
	"github.com/castbridge/castbridge/transmux/rtmp/ingest"
	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// observer records what the ingest saw.
type observer struct {
	mu       sync.Mutex
	infos    []ingest.PublishInfo
	msgs     []ingest.Message
	commands []string
}

func (o *observer) snapshot() ([]ingest.PublishInfo, []ingest.Message, []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.infos), slices.Clone(o.msgs), slices.Clone(o.commands)
}

func startIngest(t *testing.T, onPublish func(ingest.PublishInfo) error) (*observer, string) {
	t.Helper()
	o := &observer{}
	srv, err := ingest.Listen(ingest.Config{
		Addr: "127.0.0.1:0",
		OnPublish: func(pi ingest.PublishInfo) error {
			o.mu.Lock()
			o.infos = append(o.infos, pi)
			o.mu.Unlock()
			if onPublish != nil {
				return onPublish(pi)
			}
			return nil
		},
		OnMessage: func(_ string, m ingest.Message) {
			o.mu.Lock()
			o.msgs = append(o.msgs, m)
			o.mu.Unlock()
		},
		OnCommand: func(_ string, cmd string) {
			o.mu.Lock()
			o.commands = append(o.commands, cmd)
			o.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return o, srv.Addr().String()
}

func endpoint(t *testing.T, url string) rtmppush.Endpoint {
	t.Helper()
	e, err := rtmppush.ParseEndpoint(url, "")
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPublishToIngest(t *testing.T) {
	o, addr := startIngest(t, nil)
	ep := endpoint(t, "rtmp://"+addr+"/live/sk_secret?tok=1")
	p, err := rtmppush.Dial(context.Background(), rtmppush.Config{
		Endpoint:    ep,
		ConnectInfo: map[string]any{"rtmpconnectinfo": "token-xyz", "num": 42.5, "flag": true, "app": "override-ignored"},
	})
	if err != nil {
		t.Fatal(err)
	}

	meta, _ := flv.AppendSetDataFrame(nil, flv.Metadata{Width: 320, Height: 240, FrameRate: 30, VideoCodecID: 7, AudioCodecID: 10, Encoder: "test"})
	cue, _ := flv.AppendDataMessage(nil, "onCuePoint", map[string]any{"name": "ad", "time": 1.5})
	big := make([]byte, 30000) // several 4096-byte chunks
	for i := range big {
		big[i] = byte(i)
	}
	type sent struct {
		typ  uint8
		ts   uint32
		body []byte
	}
	want := []sent{
		{flv.TagScript, 0, meta},
		{flv.TagVideo, 0, flv.AppendAVCNALUs(nil, [][]byte{{0x65, 1, 2, 3}}, true, 0)},
		{flv.TagAudio, 10, []byte{0xaf, 1, 2, 3}},
		{flv.TagVideo, 33, flv.AppendAVCNALUs(nil, [][]byte{big}, false, 0)},
		{flv.TagScript, 40, cue},
		{flv.TagVideo, 0x00fffff0, flv.AppendAVCNALUs(nil, [][]byte{big}, false, 0)}, // around the extended timestamp boundary
		{flv.TagVideo, 0x01000010, flv.AppendAVCNALUs(nil, [][]byte{big}, true, 0)},
		{flv.TagAudio, 0x01000020, []byte{0xaf, 1, 9}},
	}
	for _, s := range want {
		var err error
		switch s.typ {
		case flv.TagAudio:
			err = p.WriteAudio(s.ts, s.body)
		case flv.TagVideo:
			err = p.WriteVideo(s.ts, s.body)
		default:
			err = p.WriteData(s.ts, s.body)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if p.BytesSent() < 3*30000 {
		t.Errorf("BytesSent = %d", p.BytesSent())
	}
	waitFor(t, "messages", func() bool { _, m, _ := o.snapshot(); return len(m) == len(want) })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if !errors.Is(p.Err(), rtmppush.ErrClosed) {
		t.Fatalf("Err = %v", p.Err())
	}
	if err := p.WriteVideo(0, nil); !errors.Is(err, rtmppush.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	waitFor(t, "deleteStream", func() bool { _, _, c := o.snapshot(); return slices.Contains(c, "deleteStream") })

	infos, msgs, cmds := o.snapshot()
	if len(infos) != 1 {
		t.Fatalf("publishes: %v", infos)
	}
	pi := infos[0]
	if pi.App != "live" || pi.Name != "sk_secret?tok=1" || pi.TCURL != "rtmp://"+addr+"/live" {
		t.Errorf("publish info %+v", pi)
	}
	c := pi.Connect
	if c["rtmpconnectinfo"] != "token-xyz" || c["num"] != 42.5 || c["flag"] != true || c["app"] != "live" ||
		c["type"] != "nonprivate" || c["flashVer"] != rtmppush.DefaultFlashVer {
		t.Errorf("connect object %v", c)
	}
	for i, s := range want {
		m := msgs[i]
		if m.Type != s.typ || m.Timestamp != s.ts || !bytes.Equal(m.Body, s.body) {
			t.Errorf("message %d: type %d ts %#x len %d, want type %d ts %#x len %d", i, m.Type, m.Timestamp, len(m.Body), s.typ, s.ts, len(s.body))
		}
	}
	if m := msgs[0]; !m.SetDataFrame || m.Handler != "onMetaData" || m.Values.(map[string]any)["width"] != 320.0 {
		t.Errorf("metadata message: %+v", m)
	}
	if m := msgs[4]; m.SetDataFrame || m.Handler != "onCuePoint" || m.Values.(map[string]any)["name"] != "ad" {
		t.Errorf("cue point message: %+v", m)
	}
	wantCmds := []string{"connect", "releaseStream", "FCPublish", "createStream", "publish", "FCUnpublish", "deleteStream"}
	if !slices.Equal(cmds, wantCmds) {
		t.Errorf("commands %v, want %v", cmds, wantCmds)
	}
}

func TestRejectedPublish(t *testing.T) {
	_, addr := startIngest(t, func(ingest.PublishInfo) error {
		return &ingest.Reject{Code: "NetStream.Publish.BadName", Description: "unknown key sk_bad"}
	})
	_, err := rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: endpoint(t, "rtmp://"+addr+"/live/sk_bad")})
	var rej *rtmppush.RejectedError
	if !errors.As(err, &rej) || rej.Code != "NetStream.Publish.BadName" {
		t.Fatalf("err = %v, want RejectedError BadName", err)
	}
	if strings.Contains(err.Error(), "sk_bad") {
		t.Fatalf("error leaks the key: %v", err)
	}
}

func TestDuplicatePublishRejected(t *testing.T) {
	_, addr := startIngest(t, nil)
	ep := endpoint(t, "rtmp://"+addr+"/live/dup")
	p, err := rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: ep})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, err = rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: ep})
	var rej *rtmppush.RejectedError
	if !errors.As(err, &rej) || rej.Code != "NetStream.Publish.BadName" {
		t.Fatalf("err = %v", err)
	}
}

func TestRefusedPortIsUnreachableFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	start := time.Now()
	_, err = rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: endpoint(t, "rtmp://"+addr+"/live/key"), DialTimeout: 5 * time.Second})
	if !errors.Is(err, rtmppush.ErrUnreachable) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("refused port took %v", d)
	}
}

func TestSilentServerTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c) // read everything, answer nothing
		c.Close()
	}()
	start := time.Now()
	_, err = rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: endpoint(t, "rtmp://"+ln.Addr().String()+"/live/key"), PublishTimeout: 300 * time.Millisecond})
	if !errors.Is(err, rtmppush.ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Fatalf("timed out after %v", d)
	}
}

func TestContextCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = rtmppush.Dial(ctx, rtmppush.Config{Endpoint: endpoint(t, "rtmp://"+ln.Addr().String()+"/live/key")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestIngestGoneEndsSession(t *testing.T) {
	srv, err := ingest.Listen(ingest.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	p, err := rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: endpoint(t, "rtmp://"+srv.Addr().String()+"/live/k")})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the ingest went away")
	}
	if p.Err() == nil || errors.Is(p.Err(), rtmppush.ErrClosed) {
		t.Fatalf("Err = %v", p.Err())
	}
	if err := p.WriteVideo(0, []byte{0x17}); err == nil {
		t.Fatal("write on a dead session succeeded")
	}
	p.Close()
}

func TestCloseDuringWrites(t *testing.T) {
	_, addr := startIngest(t, nil)
	p, err := rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: endpoint(t, "rtmp://"+addr+"/live/race")})
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 5000)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for ts := uint32(0); ; ts += 33 {
			if err := p.WriteVideo(ts, body); err != nil {
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	<-stopped
}

// TestRTMPS runs the ingest behind an in-process TLS terminator.
func TestRTMPS(t *testing.T) {
	o, addr := startIngest(t, nil)
	cert, pool := selfSigned(t)
	port := tlsTerminator(t, addr, cert)
	ep := endpoint(t, "rtmps://127.0.0.1:"+port+"/live/tls-key")
	if _, err := rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: ep, DialTimeout: 2 * time.Second}); !errors.Is(err, rtmppush.ErrUnreachable) {
		t.Fatalf("untrusted certificate: err = %v, want ErrUnreachable", err)
	}
	p, err := rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: ep, TLSConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WriteVideo(7, []byte{0x17, 1, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "video over TLS", func() bool { _, m, _ := o.snapshot(); return len(m) == 1 && m[0].Timestamp == 7 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "castbridge test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestFFmpegIngest pushes a real H.264 stream into ffmpeg's one-shot RTMP
// server and checks the recording with ffprobe.
func TestFFmpegIngest(t *testing.T) {
	s := flvtest.GenerateH264(t, 2)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	out := filepath.Join(t.TempDir(), "out.flv")
	var stderr bytes.Buffer
	ff := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "warning", "-listen", "1",
		"-i", fmt.Sprintf("rtmp://127.0.0.1:%d/live/key", port), "-c", "copy", "-y", out)
	ff.Stderr = &stderr
	if err := ff.Start(); err != nil {
		t.Fatal(err)
	}
	ffDone := make(chan error, 1)
	go func() { ffDone <- ff.Wait() }()
	exited := false
	defer func() {
		if !exited {
			_ = ff.Process.Kill()
			<-ffDone
		}
	}()

	ep := endpoint(t, fmt.Sprintf("rtmp://127.0.0.1:%d/live/key", port))
	var p *rtmppush.Publisher
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err = rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: ep})
		if err == nil {
			break
		}
		if !errors.Is(err, rtmppush.ErrUnreachable) || time.Now().After(deadline) {
			t.Fatalf("dial ffmpeg: %v; ffmpeg: %s", err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	meta, _ := flv.AppendSetDataFrame(nil, flv.Metadata{Width: 320, Height: 240, FrameRate: 30, VideoCodecID: flv.VideoCodecAVC, Encoder: "castbridge-test"})
	if err := p.WriteData(0, meta); err != nil {
		t.Fatal(err)
	}
	body, err := flv.AppendAVCSequenceHeader(nil, s.SPS, s.PPS)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WriteVideo(0, body); err != nil {
		t.Fatal(err)
	}
	for i, au := range s.Units {
		body = flv.AppendAVCNALUs(body[:0], au.NALUs, au.Keyframe, 0)
		if err := p.WriteVideo(uint32(i*1000/30), body); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ffDone:
		exited = true
		if err != nil {
			t.Fatalf("ffmpeg: %v: %s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("ffmpeg did not finish: %s", stderr.String())
	}
	pr := flvtest.ProbeVideo(t, out)
	if pr.CodecName != "h264" || pr.Width != 320 || pr.Height != 240 || pr.Frames != len(s.Units) {
		t.Fatalf("ffprobe %+v, want h264 320x240 %d frames", pr, len(s.Units))
	}
}
