package gatewaytest

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Redis is a redis-server (Debian's) on a loopback port, for the cluster
// tests: no persistence, no protected mode. Stop and Start keep the port,
// so clients see the server go away and come back.
type Redis struct {
	t    testing.TB
	bin  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  bytes.Buffer
}

// StartRedis starts redis-server on a free port of 127.0.0.1 and stops it
// on t.Cleanup. It skips the test when redis-server is missing (fails when
// CI is set: scripts/deps.sh installs it).
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	r := &Redis{t: t, bin: NeedTool(t, "redis-server")}
	for attempt := 0; ; attempt++ {
		port, err := freeTCPPort()
		if err != nil {
			t.Fatal(err)
		}
		r.port = port
		if err := r.start(); err == nil {
			break
		} else if attempt == 3 {
			t.Fatalf("gatewaytest: redis-server: %v", err)
		}
	}
	t.Cleanup(r.Stop)
	return r
}

// Addr is host:port.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// URL is redis://host:port/0.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// Start starts the server again on its port after Stop.
func (r *Redis) Start() {
	r.t.Helper()
	var err error
	for range 20 { // the old socket may linger a moment
		if err = r.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.t.Fatalf("gatewaytest: restarting redis-server: %v", err)
}

func (r *Redis) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out.Reset()
	cmd := exec.Command(r.bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--loglevel", "warning")
	cmd.Stdout, cmd.Stderr = &r.out, &r.out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.Addr(), 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			r.cmd, r.done = cmd, done
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("exited: %s", r.out.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("not listening after 5 s: %s", r.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (as a crash would) and waits for it to exit.
func (r *Redis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}
