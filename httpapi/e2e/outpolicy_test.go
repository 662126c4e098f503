package e2e

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
)

// watchListener listens on addr and counts the connections it sees; with
// banner, it greets each like an SSH server would.
func watchListener(t *testing.T, addr, banner string) (net.Listener, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			if banner != "" {
				_, _ = c.Write([]byte(banner))
				time.Sleep(100 * time.Millisecond)
			}
			c.Close()
		}
	}()
	return ln, &n
}

// TestOutputPolicy: outputs and icecast_urls the policy refuses are 400
// OUTPUT_NOT_ALLOWED (API.md) before anything is dialed; what --allow-outputs opens
// works; unreachable sources say so without the peer's bytes, and no key,
// path or token reaches a response or a log line.
func TestOutputPolicy(t *testing.T) {
	parallel(t, light)
	h := newHarness(t, harnessOptions{denyPrivate: true, allowOutputs: []string{"127.0.0.1"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), Loop: true})
	path := "/v1/streams/" + id + "/broadcast"
	const secret = "S3CRETKEY"
	apiPort := strconv.Itoa(h.srv.Listener.Addr().(*net.TCPAddr).Port)

	// A private address (127.0.0.2 is loopback, not in --allow-outputs).
	private, privateConns := watchListener(t, "127.0.0.2:0", "")
	icecast := func(u string) map[string]any {
		return map[string]any{"transcodingTargets": map[string]any{"output": h.ingestURL() + "/ice", "icecast_audio": true, "icecast_url": u}}
	}
	output := func(u string) map[string]any {
		return map[string]any{"transcodingTargets": map[string]any{"output": u}}
	}
	var responses []string
	for _, c := range []struct {
		body any
		want string
	}{
		{output("rtmp://169.254.169.254/live/" + secret), "output host resolves to a cloud metadata address, which castbridge never dials"},
		{output("rtmp://169.254.10.1:1935/live/" + secret), "output host resolves to a link-local address, which castbridge never dials"},
		{output("rtmp://[fe80::1]/live/" + secret), "link-local"},
		{output("rtmp://224.0.0.1/live/" + secret), "multicast"},
		{output("rtmp://0.0.0.0:" + apiPort + "/live/" + secret), "unspecified"},
		{output("rtmp://127.0.0.1:" + apiPort + "/live/" + secret), "own listener"},
		{output("rtmp://" + private.Addr().String() + "/live/" + secret), "output host resolves to a loopback address, which this gateway refuses (--deny-private-outputs)"},
		{output("rtmp://10.20.30.40/live/" + secret), "private address"},
		{output("rtmp://[fc00::1]/live/" + secret), "private address"},
		{output("rtmp://localhost/live/" + secret), "loopback"},
		{icecast("http://169.254.169.254/latest/meta-data/iam/" + secret + "?token=" + secret), "icecast_url host resolves to a cloud metadata address"},
		{icecast("http://127.0.0.1:" + apiPort + "/v1/streams?token=" + secret), "own listener"},
		{icecast("http://" + private.Addr().String() + "/" + secret + ".mp3"), "icecast_url host resolves to a loopback address"},
	} {
		e := h.expectError("POST", path, c.body, 400, "OUTPUT_NOT_ALLOWED")
		if !strings.Contains(e.Error.Message, c.want) {
			t.Errorf("message %q, want it to say %q", e.Error.Message, c.want)
		}
		responses = append(responses, e.Error.Message)
	}
	// A target added to a live broadcast is checked the same way.
	if st, raw := h.call("POST", path, output(h.ingestURL()+"/allowed"), nil); st != http.StatusCreated {
		t.Fatalf("broadcast to the allowed 127.0.0.1: %d %s", st, raw)
	}
	h.waitFrames("allowed", 1, 5*time.Second)
	e := h.expectError("POST", path+"/targets", map[string]any{"output": "rtmp://" + private.Addr().String() + "/live/" + secret}, 400, "OUTPUT_NOT_ALLOWED")
	responses = append(responses, e.Error.Message)
	if n := privateConns.Load(); n != 0 {
		t.Errorf("the refused private listener saw %d connections", n)
	}
	h.call("DELETE", path, nil, nil)

	// Allowed but unreachable or not HTTP: "cannot be reached", the same
	// for a closed port and an SSH banner, never the peer's bytes.
	closed, _ := watchListener(t, "127.0.0.1:0", "")
	closedAddr := closed.Addr().String()
	closed.Close()
	ssh, sshConns := watchListener(t, "127.0.0.1:0", "SSH-2.0-OpenSSH_9.2\r\n")
	var reach []string
	for _, u := range []string{"http://" + closedAddr + "/" + secret + "?token=" + secret, "http://" + ssh.Addr().String() + "/" + secret + "?token=" + secret} {
		e := h.expectError("POST", path, icecast(u), 400, "INVALID_REQUEST")
		responses = append(responses, e.Error.Message)
		host := u[len("http://") : strings.Index(u[len("http://"):], "/")+len("http://")]
		reach = append(reach, strings.ReplaceAll(e.Error.Message, host, "HOST"))
	}
	if reach[0] != reach[1] || !strings.Contains(reach[0], "cannot be reached") {
		t.Errorf("closed port and SSH server told apart or not unreachable: %q vs %q", reach[0], reach[1])
	}
	if sshConns.Load() == 0 {
		t.Error("the SSH listener was never dialed: the test proves nothing")
	}
	for _, m := range responses {
		if strings.Contains(m, secret) || strings.Contains(m, "SSH") || strings.Contains(m, "meta-data") || strings.Contains(m, "/v1/streams") {
			t.Errorf("response leaks: %q", m)
		}
	}
	if l := h.logs.String(); strings.Contains(l, secret) || strings.Contains(l, "meta-data") {
		t.Errorf("logs leak the secret or a path:\n%s", l)
	}
}
