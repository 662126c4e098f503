package e2e

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
)

// The output policy inside a network namespace of the test's own, where
// link-local, private and "metadata" addresses are the machine's own: a
// dial the policy failed to stop would reach a listener there.
//
// TestOutputPolicyNetns re-executes the test binary under `unshare --net
// --mount`; the child (netnsChildEnv set) brings lo and a veth pair up with
// 169.254.169.254, 169.254.10.1, 10.77.0.1 and 192.168.77.1, bind-mounts a
// hosts file naming them over /etc/hosts, and runs the checks. Besides the
// listeners' accept counts, a packet socket counts every TCP packet sent
// to each address: "refused" means not one SYN left.

const netnsChildEnv = "CASTBRIDGE_E2E_NETNS_HOSTS" // the hosts file; set in the child only

const netnsHosts = `127.0.0.1 localhost
169.254.169.254 metadata.test
169.254.10.1 linklocal.test
10.77.0.1 private.test
192.168.77.1 lan.test
`

func TestOutputPolicyNetns(t *testing.T) {
	parallel(t, light)
	if hosts := os.Getenv(netnsChildEnv); hosts != "" {
		netnsChild(t, hosts)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to create a network namespace; CI runs as root")
	}
	for _, tool := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("needs %s (util-linux, iproute2: scripts/deps.sh installs it): %v; CI is set, so this is an error", tool, err)
			}
			t.Skipf("needs %s (util-linux, iproute2): %v", tool, err)
		}
	}
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte(netnsHosts), 0o644); err != nil {
		t.Fatal(err)
	}
	own, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Skipf("no network namespaces here: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--net", "--mount", "--",
		os.Args[0], "-test.run=^TestOutputPolicyNetns$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), netnsChildEnv+"="+hosts, "CASTBRIDGE_E2E_PARENT_NETNS="+own)
	out, err := cmd.CombinedOutput()
	if err != nil && bytes.Contains(out, []byte("unshare failed")) {
		t.Skipf("cannot create a namespace here (a container without CAP_SYS_ADMIN?): %s", firstLine(out))
	}
	// The child's findings (its log lines marked "netns:"); everything on
	// failure.
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if l := sc.Text(); strings.Contains(l, "netns:") || strings.HasPrefix(strings.TrimSpace(l), "---") {
			t.Log(strings.TrimSpace(l))
		}
	}
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestOutputPolicyNetns")) {
		t.Fatalf("the test in the namespace failed (%v):\n%s", err, out)
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

// netnsChild runs in the new namespace.
func netnsChild(t *testing.T, hosts string) {
	if own, _ := os.Readlink("/proc/self/ns/net"); own == "" || own == os.Getenv("CASTBRIDGE_E2E_PARENT_NETNS") {
		t.Fatalf("not in a namespace of its own (%q): refusing to change the host's network", own)
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "cb0", "type", "veth", "peer", "name", "cb1"},
		{"link", "set", "cb0", "up"},
		{"link", "set", "cb1", "up"},
		{"addr", "add", "169.254.169.254/32", "dev", "cb0"},
		{"addr", "add", "169.254.10.1/16", "dev", "cb0"},
		{"addr", "add", "10.77.0.1/24", "dev", "cb0"},
		{"addr", "add", "192.168.77.1/24", "dev", "cb0"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if err := syscall.Mount(hosts, "/etc/hosts", "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mount the hosts file: %v", err)
	}
	if addrs, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip4", "metadata.test"); err != nil || len(addrs) != 1 || addrs[0].Unmap() != netip.MustParseAddr("169.254.169.254") {
		t.Fatalf("metadata.test resolves to %v, %v: the hosts file is not in place", addrs, err)
	}
	sniff := newTCPSniffer(t)

	var (
		metadata  = "169.254.169.254"
		linkLocal = "169.254.10.1"
		private   = "10.77.0.1"
		lan       = "192.168.77.1"
	)
	const secret = "S3CRETKEY"
	output := func(u string) map[string]any {
		return map[string]any{"transcodingTargets": map[string]any{"output": u}}
	}
	// listeners on every address: an RTMP port and an HTTP port each.
	type watched struct {
		rtmp, http string
		conns      func() int32
	}
	watch := func(t *testing.T, ip string) watched {
		r, rn := watchListener(t, ip+":0", "")
		hl, hn := watchListener(t, ip+":0", "")
		return watched{rtmp: r.Addr().String(), http: hl.Addr().String(), conns: func() int32 { return rn.Load() + hn.Load() }}
	}
	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

	// refused asserts that a broadcast with body is refused with
	// OUTPUT_NOT_ALLOWED (API.md) saying want, and returns the message.
	refused := func(t *testing.T, h *harness, id string, body map[string]any, want string) {
		t.Helper()
		var e apiError
		st, raw := h.call("POST", "/v1/streams/"+id+"/broadcast", body, &e)
		if st != http.StatusBadRequest || e.Error.Code != "OUTPUT_NOT_ALLOWED" || !strings.Contains(e.Error.Message, want) {
			t.Errorf("%s: %d %s, want 400 OUTPUT_NOT_ALLOWED saying %q", toJSON(body), st, raw, want)
		}
		if strings.Contains(string(raw), secret) {
			t.Errorf("the refusal leaks the key: %s", raw)
		}
		t.Logf("netns: refused %s: %s", toJSON(body), e.Error.Message)
	}
	icecast := func(h *harness, u string) map[string]any {
		return map[string]any{"transcodingTargets": map[string]any{"output": h.ingestURL() + "/ice", "icecast_audio": true, "icecast_url": u}}
	}
	noPackets := func(t *testing.T, ips []string, ws map[string]watched) {
		t.Helper()
		for _, ip := range ips {
			if n := ws[ip].conns(); n != 0 {
				t.Errorf("the listeners on %s accepted %d connections", ip, n)
			}
			if n := sniff.count(ip); n != 0 {
				t.Errorf("%d TCP packets were sent to %s", n, ip)
			}
		}
		t.Logf("netns: no connection and no TCP packet to %v", ips)
	}

	t.Run("deny-private", func(t *testing.T) {
		sniff.reset()
		ws := map[string]watched{metadata: watch(t, metadata), linkLocal: watch(t, linkLocal), private: watch(t, private), lan: watch(t, lan)}
		h := newHarness(t, harnessOptions{denyPrivate: true, allowOutputs: []string{"127.0.0.1"}})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		_, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), Loop: true})
		for _, c := range []struct {
			body map[string]any
			want string
		}{
			{output("rtmp://" + ws[metadata].rtmp + "/live/" + secret), "output host resolves to a cloud metadata address, which castbridge never dials"},
			{output("rtmp://" + ws[linkLocal].rtmp + "/live/" + secret), "output host resolves to a link-local address, which castbridge never dials"},
			{output("rtmp://" + ws[private].rtmp + "/live/" + secret), "output host resolves to a private address, which this gateway refuses (--deny-private-outputs)"},
			{output("rtmp://" + ws[lan].rtmp + "/live/" + secret), "private address"},
			// Names, resolved once at the dial and refused there.
			{output("rtmp://metadata.test:" + port(ws[metadata].rtmp) + "/live/" + secret), "cloud metadata address"},
			{output("rtmp://linklocal.test:" + port(ws[linkLocal].rtmp) + "/live/" + secret), "link-local address"},
			{output("rtmp://private.test:" + port(ws[private].rtmp) + "/live/" + secret), "private address"},
			{icecast(h, "http://"+ws[metadata].http+"/latest/meta-data/"+secret), "icecast_url host resolves to a cloud metadata address"},
			{icecast(h, "http://"+ws[linkLocal].http+"/"+secret), "icecast_url host resolves to a link-local address"},
			{icecast(h, "http://"+ws[private].http+"/"+secret), "icecast_url host resolves to a private address"},
			{icecast(h, "http://lan.test:"+port(ws[lan].http)+"/"+secret), "private address"},
			{icecast(h, "http://metadata.test:"+port(ws[metadata].http)+"/latest/meta-data/"), "cloud metadata address"},
		} {
			refused(t, h, id, c.body, c.want)
		}
		noPackets(t, []string{metadata, linkLocal, private, lan}, ws)
	})

	t.Run("allow-outputs", func(t *testing.T) {
		sniff.reset()
		ws := map[string]watched{metadata: watch(t, metadata), linkLocal: watch(t, linkLocal)}
		// Opening the metadata address and all of link-local changes
		// nothing: the policy refuses them whatever --allow-outputs says.
		h := newHarness(t, harnessOptions{denyPrivate: true, allowOutputs: []string{"127.0.0.1", "10.77.0.0/24", "lan.test", metadata, "169.254.0.0/16", "metadata.test"}})
		privIngest, privRec := startIngest(t, private+":0", h.log)
		lanIngest, lanRec := startIngest(t, lan+":0", h.log)
		iceWatch, iceConns := watchListener(t, private+":0", "")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		_, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), Loop: true})

		for _, c := range []struct {
			body map[string]any
			want string
		}{
			{output("rtmp://" + ws[metadata].rtmp + "/live/" + secret), "cloud metadata address"},
			{output("rtmp://metadata.test:" + port(ws[metadata].rtmp) + "/live/" + secret), "cloud metadata address"},
			{output("rtmp://" + ws[linkLocal].rtmp + "/live/" + secret), "link-local address"},
			{icecast(h, "http://"+ws[metadata].http+"/latest/meta-data/"), "cloud metadata address"},
		} {
			refused(t, h, id, c.body, c.want)
		}
		noPackets(t, []string{metadata, linkLocal}, ws)

		// The CIDR and the host name open their private addresses: both
		// ingests are dialed and get the stream.
		before := sniff.count(private)
		var bv broadcastView
		if st, raw := h.call("POST", "/v1/streams/"+id+"/broadcast", map[string]any{"targets": []any{
			map[string]any{"output": "rtmp://" + privIngest.Addr().String() + "/live/cidr"},
			map[string]any{"output": "rtmp://lan.test:" + port(lanIngest.Addr().String()) + "/live/name"},
		}}, &bv); st != http.StatusCreated || len(bv.Targets) != 2 {
			t.Fatalf("broadcast to the allowed private ingests: %d %s", st, raw)
		}
		if n := privRec.waitFrames("cidr", 10, 10*time.Second); n < 10 {
			t.Errorf("the ingest on %s (--allow-outputs 10.77.0.0/24) got %d frames", private, n)
		}
		if n := lanRec.waitFrames("name", 10, 10*time.Second); n < 10 {
			t.Errorf("the ingest on lan.test (--allow-outputs lan.test) got %d frames", n)
		}
		// The sniffer sees what is dialed: its zero counts above mean something.
		if n := sniff.count(private) - before; n == 0 {
			t.Error("the packet counter saw no TCP packet to the allowed private ingest: it proves nothing")
		}
		t.Logf("netns: allowed %s and lan.test dialed (%d TCP packets to %s), frames arrived", private, sniff.count(private)-before, private)
		h.call("DELETE", "/v1/streams/"+id+"/broadcast", nil, nil)

		// An allowed Icecast source is dialed too (and is not Icecast:
		// "cannot be reached").
		e := h.expectError("POST", "/v1/streams/"+id+"/broadcast", icecast(h, "http://"+iceWatch.Addr().String()+"/"+secret), http.StatusBadRequest, "INVALID_REQUEST")
		if iceConns.Load() == 0 || !strings.Contains(e.Error.Message, "cannot be reached") {
			t.Errorf("allowed icecast_url on %s: %d connections, %q", private, iceConns.Load(), e.Error.Message)
		}
	})

	t.Run("defaults", func(t *testing.T) {
		sniff.reset()
		ws := map[string]watched{metadata: watch(t, metadata), linkLocal: watch(t, linkLocal)}
		// No flags: private ranges are allowed (a local nginx works), the
		// metadata and link-local addresses are not.
		h := newHarness(t, harnessOptions{})
		privIngest, privRec := startIngest(t, private+":0", h.log)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		_, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), Loop: true})
		for _, c := range []struct {
			body map[string]any
			want string
		}{
			{output("rtmp://" + ws[metadata].rtmp + "/live/" + secret), "cloud metadata address"},
			{output("rtmp://metadata.test:" + port(ws[metadata].rtmp) + "/live/" + secret), "cloud metadata address"},
			{output("rtmp://linklocal.test:" + port(ws[linkLocal].rtmp) + "/live/" + secret), "link-local address"},
			{icecast(h, "http://metadata.test:"+port(ws[metadata].http)+"/latest/meta-data/"), "cloud metadata address"},
			{icecast(h, "http://"+ws[linkLocal].http+"/"), "link-local address"},
		} {
			refused(t, h, id, c.body, c.want)
		}
		noPackets(t, []string{metadata, linkLocal}, ws)
		if st, raw := h.call("POST", "/v1/streams/"+id+"/broadcast", output("rtmp://private.test:"+port(privIngest.Addr().String())+"/live/default"), nil); st != http.StatusCreated {
			t.Fatalf("broadcast to a private ingest by default: %d %s", st, raw)
		}
		if n := privRec.waitFrames("default", 10, 10*time.Second); n < 10 {
			t.Errorf("the private ingest got %d frames", n)
		}
		h.call("DELETE", "/v1/streams/"+id+"/broadcast", nil, nil)
	})
	if sniff.total() == 0 {
		t.Error("the packet counter saw nothing at all")
	}
}

// tcpSniffer counts the IPv4 TCP packets sent to each address, from a
// packet socket on every interface of the namespace.
type tcpSniffer struct {
	fd   int
	mu   sync.Mutex
	byIP map[string]int
	all  int
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func newTCPSniffer(t *testing.T) *tcpSniffer {
	t.Helper()
	// SOCK_DGRAM: the link layer is cut off, each read is one IP packet.
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, int(htons(syscall.ETH_P_IP)))
	if err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	// A read timeout lets the reader see the test's end.
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &syscall.Timeval{Usec: 100_000}); err != nil {
		t.Fatal(err)
	}
	s := &tcpSniffer{fd: fd, byIP: map[string]int{}}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			select {
			case <-stop:
				return
			default:
			}
			// Traffic to the namespace's own addresses goes over lo, where a
			// packet socket sees each packet once.
			n, _, err := syscall.Recvfrom(fd, buf, 0)
			if err != nil || n < 20 {
				continue
			}
			if buf[0]>>4 != 4 || buf[9] != syscall.IPPROTO_TCP {
				continue
			}
			dst := netip.AddrFrom4([4]byte(buf[16:20])).String()
			s.mu.Lock()
			s.byIP[dst]++
			s.all++
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		_ = syscall.Close(fd)
	})
	return s
}

func (s *tcpSniffer) count(ip string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byIP[ip]
}

func (s *tcpSniffer) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.all
}

func (s *tcpSniffer) reset() {
	// Packets still in flight from the previous part settle first.
	time.Sleep(200 * time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.byIP)
}
