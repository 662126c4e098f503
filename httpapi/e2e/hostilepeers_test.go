package e2e

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/format/flv/flvtest"
	"github.com/castbridge/castbridge/transmux/rtmp/chunk"
)

// hostileProxy stands between a target and a real ingest. Its first
// connection turns hostile once the publish is under way: after `after`
// it stops passing the ingest's bytes and sends its own instead. Later
// connections (the target's reconnects) are passed through untouched.
type hostileProxy struct {
	ln       net.Listener
	upstream string
	after    time.Duration
	payload  []byte
	conns    atomic.Int32
	injected atomic.Bool
	wg       sync.WaitGroup
}

func startHostileProxy(t *testing.T, upstream string, after time.Duration, payload []byte) *hostileProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &hostileProxy{ln: ln, upstream: upstream, after: after, payload: payload}
	var mu sync.Mutex
	var open []net.Conn
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := p.conns.Add(1)
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			open = append(open, c, up)
			mu.Unlock()
			p.wg.Go(func() { p.serve(c, up, n == 1) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *hostileProxy) serve(c, up net.Conn, hostile bool) {
	defer c.Close()
	defer up.Close()
	var wmu sync.Mutex // the client's write side: the ingest's bytes, or ours
	cut := false
	p.wg.Go(func() {
		_, _ = io.Copy(up, c)
		up.Close()
	})
	if hostile {
		timer := time.AfterFunc(p.after, func() {
			wmu.Lock()
			defer wmu.Unlock()
			cut = true
			p.injected.Store(true)
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = c.Write(p.payload)
		})
		defer timer.Stop()
	}
	buf := make([]byte, 32*1024)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			wmu.Lock()
			if !cut {
				_, err = c.Write(buf[:n])
			}
			wmu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// chunks frames messages the way an ingest would send them.
func chunks(t *testing.T, write func(w *chunk.Writer) error) []byte {
	t.Helper()
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	w := chunk.NewWriter(bw)
	if err := write(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestHostileIngestsSpareTheOthers: one broadcast goes to a good ingest and
// to five that turn hostile mid-stream (a command nested a million deep, a
// string claiming 2 GiB, a chunk size of 0, a 16 MiB command header,
// random bytes). The gateway stays up, each hostile connection is dropped
// and its target reconnects (the ingest behind it is good again), and the
// good target keeps every frame: no gap in its timestamps, nothing dropped,
// no reconnect.
func TestHostileIngestsSpareTheOthers(t *testing.T) {
	parallel(t, light)
	h := newHarness(t, harnessOptions{})
	upstream := h.ingest.Addr().String()

	nested := flvtest.NestedCommand("onStatus", 1_000_000)
	hugeString := []byte{0x02, 0x00, 0x08}
	hugeString = append(hugeString, "onStatus"...)
	hugeString = append(hugeString, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x05, 0x03, 0x00, 0x04)
	hugeString = append(hugeString, "code"...)
	hugeString = append(hugeString, 0x0c, 0x7f, 0xff, 0xff, 0xff, 'x', 'y', 'z')
	rnd := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range rnd {
		rnd[i] = byte(rng.Uint32())
	}
	// A type 0 header on chunk stream 9: a 16 MiB - 1 command, then a few
	// bytes of it.
	bigHeader := []byte{0x09, 0, 0, 0, 0xff, 0xff, 0xff, 20, 1, 0, 0, 0}
	bigHeader = append(bigHeader, bytes.Repeat([]byte{0x05}, 4096)...)

	cases := []struct {
		name    string
		payload []byte
	}{
		{"nested", chunks(t, func(w *chunk.Writer) error {
			if err := w.WriteMessage(2, chunk.TypeSetChunkSize, 0, 0, []byte{0x00, 0xff, 0xff, 0xff}); err != nil {
				return err
			}
			w.SetChunkSize(chunk.MaxChunkSize)
			return w.WriteMessage(5, 20, 1, 0, nested)
		})},
		{"huge-string", chunks(t, func(w *chunk.Writer) error {
			w.SetChunkSize(128)
			return w.WriteMessage(5, 20, 1, 0, hugeString)
		})},
		{"chunk-size-0", chunks(t, func(w *chunk.Writer) error {
			return w.WriteMessage(2, chunk.TypeSetChunkSize, 0, 0, []byte{0, 0, 0, 0})
		})},
		{"16MiB-command", bigHeader},
		{"random", rnd},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"), Loop: true})
	targets := []map[string]any{{"output": h.ingestURL() + "/good"}}
	proxies := make([]*hostileProxy, len(cases))
	for i, c := range cases {
		proxies[i] = startHostileProxy(t, upstream, 2*time.Second, c.payload)
		targets = append(targets, map[string]any{"output": "rtmp://" + proxies[i].ln.Addr().String() + "/live/" + c.name})
	}
	var bv broadcastView
	if st, raw := h.call("POST", "/v1/streams/"+id+"/broadcast", map[string]any{"targets": targets}, &bv); st != http.StatusCreated {
		t.Fatalf("start broadcast: %d %s", st, raw)
	}
	start := time.Now()
	// Past the injections, and long enough for every target to be back.
	time.Sleep(8 * time.Second)
	elapsed := time.Since(start)

	var st struct {
		Targets []struct {
			ID            string `json:"id"`
			State         string `json:"state"`
			FramesSent    uint64 `json:"framesSent"`
			FramesDropped uint64 `json:"framesDropped"`
			Reconnects    int    `json:"reconnects"`
		} `json:"targets"`
	}
	if code, raw := h.call("GET", "/v1/streams/"+id+"/stats", nil, &st); code != http.StatusOK {
		t.Fatalf("stats: %d %s", code, raw)
	}
	byID := map[string]int{}
	for i, tg := range st.Targets {
		byID[tg.ID] = i
	}
	for i, tv := range bv.Targets {
		tg := st.Targets[byID[tv.ID]]
		if i == 0 {
			t.Logf("good: %s, %d frames sent, %d dropped, %d reconnects", tg.State, tg.FramesSent, tg.FramesDropped, tg.Reconnects)
			if tg.State != "live" || tg.FramesDropped != 0 || tg.Reconnects != 0 {
				t.Errorf("the good target: %s, %d frames dropped, %d reconnects", tg.State, tg.FramesDropped, tg.Reconnects)
			}
			continue
		}
		c, p := cases[i-1], proxies[i-1]
		t.Logf("%s: %s after %d connections, %d reconnects, %d frames sent", c.name, tg.State, p.conns.Load(), tg.Reconnects, tg.FramesSent)
		if !p.injected.Load() {
			t.Errorf("%s: nothing was injected: the test does not test", c.name)
		}
		if tg.Reconnects < 1 || p.conns.Load() < 2 || tg.State != "live" {
			t.Errorf("%s: the target is %s after %d reconnects over %d connections; want the hostile connection dropped and the target live again",
				c.name, tg.State, tg.Reconnects, p.conns.Load())
		}
	}
	cancel()
	pub.Wait()
	h.closeStream(id)

	// Every frame at the good ingest, in order and without a gap.
	_, msgs := h.rec.get("good")
	frames := videoFramesOf(t, msgs)
	if len(frames) == 0 || !frames[0].keyframe {
		t.Fatal("the good ingest got no video starting with a keyframe")
	}
	for i := 1; i < len(frames); i++ {
		if d := int64(frames[i].ts) - int64(frames[i-1].ts); d <= 0 || d > 100 {
			t.Fatalf("good ingest: video frame %d at %d ms, %d ms after the one before", i, frames[i].ts, d)
		}
	}
	if want := int(elapsed.Seconds() * 30 * 0.9); len(frames) < want {
		t.Errorf("good ingest: %d video frames in %v, want at least %d", len(frames), elapsed.Round(time.Millisecond), want)
	}
	var audio int
	for _, r := range msgs {
		if r.msg.Type == flv.TagAudio && len(r.msg.Body) > 1 && r.msg.Body[1] == 1 {
			audio++
		}
	}
	if want := int(elapsed.Seconds() * 46); audio < want*8/10 {
		t.Errorf("good ingest: %d AAC frames in %v, want about %d", audio, elapsed.Round(time.Millisecond), want)
	}
}
