package e2e

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/yutopp/go-amf0"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/transmux/rtmp/chunk"
)

// fourCCIngest is an RTMP ingest that answers every connect with a
// _result whose information object carries fourCcList (E-RTMP v2: the
// codecs it takes) and then waits for the client to hang up. It counts the
// connections it answered.
func fourCCIngest(t *testing.T, fourCCs []any) (addr string, answered func() int) {
	t.Helper()
	var body bytes.Buffer
	enc := amf0.NewEncoder(&body)
	for _, v := range []any{"_result", 1.0,
		map[string]any{"fmsVer": "FMS/3,5,7,7009", "capabilities": 31.0},
		map[string]any{"level": "status", "code": "NetConnection.Connect.Success", "description": "Connection succeeded.",
			"objectEncoding": 0.0, "fourCcList": fourCCs},
	} {
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		n  int
	)
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	serve := func(c net.Conn) {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		c1 := make([]byte, 1+1536)
		if _, err := io.ReadFull(c, c1); err != nil {
			return
		}
		s := append(append([]byte{3}, make([]byte, 1536)...), c1[1:]...) // S0, S1, S2 echoing C1
		if _, err := c.Write(s); err != nil {
			return
		}
		if _, err := io.ReadFull(c, make([]byte, 1536)); err != nil { // C2
			return
		}
		// The client's connect follows; whatever it is, the answer is
		// the same (transaction 1, as rtmppush's connect).
		if _, err := c.Read(make([]byte, 4096)); err != nil {
			return
		}
		bw := bufio.NewWriter(c)
		w := chunk.NewWriter(bw)
		_ = w.WriteMessage(2, chunk.TypeSetChunkSize, 0, 0, []byte{0x00, 0x00, 0x10, 0x00})
		w.SetChunkSize(4096)
		_ = w.WriteMessage(3, 20, 0, 0, body.Bytes())
		if w.Flush() != nil {
			return
		}
		mu.Lock()
		n++
		mu.Unlock()
		_, _ = io.Copy(io.Discard, c) // until the client hangs up
	}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serve(c) })
		}
	})
	return ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// TestIngestRefusesCodec: an ingest whose connect reply lists the E-RTMP
// codecs it takes, and not VP9: a VP9 broadcast's target to it fails at
// once (no reconnecting) with INGEST_REJECTED and a message that names the
// codec, the FourCC, what the ingest lists and what to do, with the stream
// key redacted, while the other target, into an ingest that lists nothing,
// goes live; alone, the target makes the broadcast a 502 INGEST_REJECTED.
func TestIngestRefusesCodec(t *testing.T) {
	parallel(t, light)
	refusing, answered := fourCCIngest(t, []any{"hvc1", "av01"})
	h := newHarness(t, harnessOptions{videoCodecs: []string{"vp9"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoCodec: "vp9", VideoFile: testdata("video-vp9.ivf"), AudioFile: testdata("audio.ogg"), Loop: true})

	var bv broadcastView
	st, raw := h.call("POST", "/v1/streams/"+id+"/broadcast", map[string]any{"targets": []map[string]any{
		{"output": h.ingestURL() + "/takes", "videocodec": "vp9"},
		{"output": "rtmp://" + refusing + "/live/SECRETKEY", "videocodec": "vp9"},
	}}, &bv)
	if st != http.StatusCreated || len(bv.Targets) != 2 {
		t.Fatalf("start broadcast: %d %s", st, raw)
	}
	ok, bad := bv.Targets[0], bv.Targets[1]
	if ok.State != "live" && ok.State != "connecting" {
		t.Errorf("the target into the ingest that lists nothing is %s (%+v)", ok.State, ok.Error)
	}
	if bad.State != "failed" || bad.Error == nil || bad.Error.Code != "INGEST_REJECTED" {
		t.Fatalf("the target into the refusing ingest: %s %+v", bad.State, bad.Error)
	}
	msg := bad.Error.Message
	t.Logf("target error: %s", msg)
	for _, want := range []string{"VP9", `"vp09"`, `["hvc1" "av01"]`, `videocodec "h264"`, refusing + "/live/****"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error %q does not say %q", msg, want)
		}
	}
	if strings.Contains(msg, "SECRETKEY") || strings.Contains(string(raw), "SECRETKEY") {
		t.Error("the stream key shows in the answer")
	}
	time.Sleep(1500 * time.Millisecond) // a reconnect would be due by now
	var sv streamView
	h.call("GET", "/v1/streams/"+id, nil, &sv)
	if sv.Broadcast == nil || len(sv.Broadcast.Targets) != 2 || sv.Broadcast.Targets[1].State != "failed" {
		t.Fatalf("the broadcast later: %+v", sv.Broadcast)
	}
	if n := answered(); n != 1 {
		t.Errorf("the refusing ingest was dialled %d times, want once: a refused codec is not retried", n)
	}
	if st, raw := h.call("DELETE", "/v1/streams/"+id+"/broadcast", nil, nil); st != http.StatusOK {
		t.Fatalf("stop: %d %s", st, raw)
	}

	e := h.expectError("POST", "/v1/streams/"+id+"/broadcast", map[string]any{"targets": []map[string]any{
		{"output": "rtmp://" + refusing + "/live/SECRETKEY", "videocodec": "vp9"}}}, http.StatusBadGateway, "INGEST_REJECTED")
	if !strings.Contains(e.Error.Message, "VP9") || strings.Contains(e.Error.Message, "SECRETKEY") {
		t.Errorf("alone: %q", e.Error.Message)
	}
}
