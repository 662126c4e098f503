package ingest

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	goflv "github.com/yutopp/go-flv"
	"github.com/yutopp/go-flv/tag"
	"go.uber.org/goleak"

	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/format/flv/flvtest"
	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func serve(t *testing.T, cfg Config) (*Server, context.CancelFunc, chan error) {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	s, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	return s, cancel, done
}

func TestRecording(t *testing.T) {
	st := flvtest.GenerateH264(t, 2)
	dir := t.TempDir()
	ended := make(chan string, 4)
	s, cancel, done := serve(t, Config{Dir: dir, OnCommand: func(stream, cmd string) {
		if cmd == "deleteStream" {
			ended <- stream
		}
	}})
	defer func() { cancel(); <-done }()

	ep, err := rtmppush.ParseEndpoint("rtmp://"+s.Addr().String()+"/live/../cam 1?key=secret", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: ep})
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := flv.AppendSetDataFrame(nil, flv.Metadata{Width: 320, Height: 240, FrameRate: 30, VideoCodecID: 7})
	cue, _ := flv.AppendDataMessage(nil, "onCuePoint", map[string]any{"name": "marker"})
	seq, _ := flv.AppendAVCSequenceHeader(nil, st.SPS, st.PPS)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(p.WriteData(0, meta))
	must(p.WriteVideo(0, seq))
	var body []byte
	for i, au := range st.Units {
		body = flv.AppendAVCNALUs(body[:0], au.NALUs, au.Keyframe, 0)
		must(p.WriteVideo(uint32(i*1000/30), body))
		if i == 30 {
			must(p.WriteData(uint32(i*1000/30), cue))
		}
	}
	must(p.Close())
	select {
	case name := <-ended:
		if name != "cam 1?key=secret" {
			t.Fatalf("ended stream %q", name)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no deleteStream")
	}

	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "cam_1.flv" {
		t.Fatalf("recordings: %v", entries)
	}
	path := filepath.Join(dir, "cam_1.flv")
	pr := flvtest.ProbeVideo(t, path)
	if pr.CodecName != "h264" || pr.Width != 320 || pr.Height != 240 || pr.Frames != len(st.Units) {
		t.Fatalf("ffprobe %+v", pr)
	}

	raw, _ := os.ReadFile(path)
	dec, err := goflv.NewDecoder(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var scripts []string
	for {
		var ft tag.FlvTag
		if err := dec.Decode(&ft); err != nil {
			break
		}
		if sd, ok := ft.Data.(*tag.ScriptData); ok {
			for k := range sd.Objects {
				scripts = append(scripts, k)
			}
		}
		ft.Close()
	}
	if len(scripts) != 2 || scripts[0] != "onMetaData" || scripts[1] != "onCuePoint" {
		t.Fatalf("script tags %v, want onMetaData (without @setDataFrame) then onCuePoint", scripts)
	}
}

func TestServeEndsEverything(t *testing.T) {
	s, cancel, done := serve(t, Config{})
	// One client stuck in the handshake, one fully publishing.
	idle, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	ep, _ := rtmppush.ParseEndpoint("rtmp://"+s.Addr().String()+"/app/x", "")
	p, err := rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: ep})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("publisher not disconnected")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCloseWithoutServe(t *testing.T) {
	s, err := Listen(Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"key":              "key",
		"a/b":              "a_b",
		"../../etc/passwd": "stream_.._.._etc_passwd",
		"..":               "stream_..",
		"":                 "stream_",
		"k?token=x":        "k",
		`a\b:c`:            "a_b_c",
		"ok-1_2.3":         "ok-1_2.3",
	} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}
