package gatewaytest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// NginxRTMPModule is where Debian's libnginx-mod-rtmp installs the module.
const NginxRTMPModule = "/usr/lib/nginx/modules/ngx_rtmp_module.so"

// NeedTool skips the test when a program is missing from PATH, unless the
// environment variable CI is set: then the test fails, because CI must
// install it (scripts/deps.sh).
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, fmt.Sprintf("%s not found in PATH (install it with scripts/deps.sh)", name))
	}
	return p
}

func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("gatewaytest: %s; CI is set, so this is an error", msg)
	}
	t.Skipf("gatewaytest: skipping: %s", msg)
}

// StartNginx starts Debian's nginx with the RTMP module on a free port of
// 127.0.0.1, with application "live" recording every stream to
// <recordDir>/<stream name>.flv (live on; record all; record_unique off),
// waits until it accepts connections and stops it on t.Cleanup (gracefully,
// so that recordings are finalized). It returns "127.0.0.1:PORT"; publish to
// rtmp://ADDR/live/NAME. Skips the test when nginx or the module is missing
// (fails instead when CI is set).
func StartNginx(t testing.TB, recordDir string) (rtmpAddr string) {
	t.Helper()
	bin := "/usr/sbin/nginx"
	if _, err := os.Stat(bin); err != nil {
		if p, err := exec.LookPath("nginx"); err == nil {
			bin = p
		} else {
			missing(t, "nginx not installed (apt-get install nginx libnginx-mod-rtmp, or scripts/deps.sh)")
		}
	}
	if _, err := os.Stat(NginxRTMPModule); err != nil {
		missing(t, NginxRTMPModule+" missing (apt-get install libnginx-mod-rtmp, or scripts/deps.sh)")
	}
	recordDir, err := filepath.Abs(recordDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(recordDir, 0o777); err != nil {
		t.Fatal(err)
	}
	// nginx may run as another user (e.g. nobody): let it write there.
	_ = os.Chmod(recordDir, 0o777)

	prefix := t.TempDir()
	_ = os.Chmod(prefix, 0o777)
	for attempt := 0; ; attempt++ {
		port, err := freeTCPPort()
		if err != nil {
			t.Fatal(err)
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		conf := filepath.Join(prefix, "nginx.conf")
		errLog := filepath.Join(prefix, "error.log")
		user := ""
		if os.Geteuid() == 0 {
			user = "user root;\n"
		}
		cfg := fmt.Sprintf(`load_module %s;
%sdaemon off;
master_process off;
worker_processes 1;
pid %s;
error_log %s info;
events { worker_connections 256; }
rtmp {
	server {
		listen %s;
		chunk_size 4096;
		application live {
			live on;
			record all;
			record_path %s;
			record_unique off;
		}
	}
}
`, NginxRTMPModule, user, filepath.Join(prefix, "nginx.pid"), errLog, addr, recordDir)
		if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		cmd := exec.Command(bin, "-p", prefix+"/", "-c", conf, "-e", errLog)
		cmd.Stdout = &out
		cmd.Stderr = &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("gatewaytest: starting nginx: %v", err)
		}
		exited := make(chan struct{})
		var once sync.Once
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() {
			once.Do(func() {
				_ = cmd.Process.Signal(syscall.SIGQUIT) // graceful: finalizes recordings
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-exited
				}
			})
		}
		ready := false
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-exited:
			default:
				c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
				if err == nil {
					_ = c.Close()
					ready = true
				}
			}
			if ready {
				break
			}
			select {
			case <-exited:
				deadline = time.Time{}
			case <-time.After(50 * time.Millisecond):
			}
		}
		if ready {
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					logData, _ := os.ReadFile(errLog)
					t.Logf("nginx error.log:\n%s%s", logData, out.String())
				}
			})
			return addr
		}
		stop()
		logData, _ := os.ReadFile(errLog)
		if attempt < 2 && bytes.Contains(logData, []byte("Address already in use")) {
			continue
		}
		t.Fatalf("gatewaytest: nginx did not start on %s:\n%s%s", addr, out.String(), logData)
	}
}

func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
