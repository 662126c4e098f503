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

// MediaMTXBin is where scripts/deps.sh builds MediaMTX: $CASTBRIDGE_BIN or
// ~/.cache/castbridge/bin, else a mediamtx in PATH.
func MediaMTXBin() string {
	dir := os.Getenv("CASTBRIDGE_BIN")
	if dir == "" {
		if home, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(home, ".cache", "castbridge", "bin")
		}
	}
	if p := filepath.Join(dir, "mediamtx"); dir != "" && isExecutable(p) {
		return p
	}
	if p, err := exec.LookPath("mediamtx"); err == nil {
		return p
	}
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// MediaMTX is a running MediaMTX with only its RTMP server, on loopback,
// recording every path it is published to.
type MediaMTX struct {
	Addr      string // host:port of its RTMP server
	RecordDir string // recordings: <RecordDir>/<path>/<segment>.<ext>

	mu  sync.Mutex
	log bytes.Buffer
}

// Log is everything MediaMTX logged so far.
func (m *MediaMTX) Log() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.log.String()
}

func (m *MediaMTX) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.log.Write(p)
}

// Recordings are the segment files recorded for path, oldest first.
func (m *MediaMTX) Recordings(path string) []string {
	files, _ := filepath.Glob(filepath.Join(m.RecordDir, path, "*"))
	return files
}

// StartMediaMTX starts MediaMTX (see MediaMTXBin; scripts/deps.sh builds it)
// with its RTMP server on a free port of 127.0.0.1 and every other server
// off, recording each path as format ("fmp4" or "mpegts") in segments of
// segment, and stops it on t.Cleanup (SIGINT: it finalizes recordings).
// Publish to rtmp://ADDR/PATH. Skips when it is missing (fails when CI is
// set).
func StartMediaMTX(t testing.TB, dir, format string, segment time.Duration) *MediaMTX {
	t.Helper()
	bin := MediaMTXBin()
	if bin == "" {
		missing(t, "mediamtx not built (scripts/deps.sh builds it into ~/.cache/castbridge/bin)")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := &MediaMTX{RecordDir: filepath.Join(dir, "recordings")}
	for attempt := 0; ; attempt++ {
		port, err := freeTCPPort()
		if err != nil {
			t.Fatal(err)
		}
		m.Addr = "127.0.0.1:" + strconv.Itoa(port)
		conf := filepath.Join(dir, "mediamtx.yml")
		cfg := fmt.Sprintf(`logLevel: info
logDestinations: [stdout]
api: false
metrics: false
pprof: false
playback: false
rtsp: false
rtmp: true
rtmpAddress: %s
hls: false
webrtc: false
srt: false
moq: false
pathDefaults:
  record: true
  recordPath: %s/%%path/%%Y-%%m-%%d_%%H-%%M-%%S-%%f
  recordFormat: %s
  recordSegmentDuration: %s
paths:
  all_others:
`, m.Addr, m.RecordDir, format, segment)
		if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, conf)
		cmd.Stdout, cmd.Stderr = m, m
		if err := cmd.Start(); err != nil {
			t.Fatalf("gatewaytest: starting mediamtx: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		var once sync.Once
		stop := func() {
			once.Do(func() {
				_ = cmd.Process.Signal(syscall.SIGINT)
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-exited
				}
			})
		}
		if waitListening(m.Addr, exited, 10*time.Second) {
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					t.Logf("mediamtx log:\n%s", m.Log())
				}
			})
			return m
		}
		stop()
		if attempt < 2 && bytes.Contains([]byte(m.Log()), []byte("address already in use")) {
			m.mu.Lock()
			m.log.Reset()
			m.mu.Unlock()
			continue
		}
		t.Fatalf("gatewaytest: mediamtx did not start on %s:\n%s", m.Addr, m.Log())
	}
}

// waitListening waits until addr accepts TCP connections, the process
// exited, or timeout passed.
func waitListening(addr string, exited <-chan struct{}, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			_ = c.Close()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
