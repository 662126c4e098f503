package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/transmux/format/flv"
)

// Publishers nobody here wrote (aiortc, GStreamer webrtcbin), driven from
// Python scripts in testdata/: a script writes its offer as one JSON line,
// reads the answer as one, and sends until its stdin closes.

// debianPython is the interpreter Debian's python3-aiortc and python3-gi
// install for; a python3 earlier in PATH (pyenv, venv) lacks them.
const debianPython = "/usr/bin/python3"

// needPython fails (CI) or skips the test when the Debian interpreter
// cannot import the modules.
func needPython(t *testing.T, imports string) string {
	t.Helper()
	out, err := exec.Command(debianPython, "-c", imports).CombinedOutput()
	if err != nil {
		msg := debianPython + " -c '" + imports + "': " + strings.TrimSpace(string(out)) + " (install with scripts/deps.sh)"
		if os.Getenv("CI") != "" {
			t.Fatalf("%s; CI is set, so this is an error", msg)
		}
		t.Skipf("skipping: %s", msg)
	}
	return debianPython
}

type scriptPublisher struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *gatewaytest.SyncBuffer
	done   chan struct{}
}

// startScript runs a publisher script and returns it with its offer.
func startScript(t *testing.T, python, script string, args ...string) (*scriptPublisher, string) {
	t.Helper()
	cmd := exec.Command(python, append([]string{filepath.Join("testdata", script)}, args...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &scriptPublisher{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 4), stderr: &gatewaytest.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	var line string
	select {
	case line = <-p.lines:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s made no offer in 20 s; stderr:\n%s", script, p.stderr)
	}
	var msg struct{ SDP string }
	if err := json.Unmarshal([]byte(line), &msg); err != nil || msg.SDP == "" {
		t.Fatalf("%s: offer line %q: %v; stderr:\n%s", script, line, err, p.stderr)
	}
	return p, msg.SDP
}

func (p *scriptPublisher) answer(sdp string) {
	p.t.Helper()
	b, _ := json.Marshal(map[string]string{"sdp": sdp})
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		p.t.Fatalf("answer to publisher: %v; stderr:\n%s", err, p.stderr)
	}
}

// stop closes the script's stdin and waits for it (killing it after 10 s).
func (p *scriptPublisher) stop() {
	_ = p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	if s := p.stderr.String(); s != "" && p.t.Failed() {
		p.t.Logf("publisher stderr:\n%s", s)
	}
}

// offerView is the part of the stream view these tests check.
type offerView struct {
	ID    string `json:"id"`
	SDP   string `json:"sdp"`
	State string `json:"state"`
	Video *struct {
		Codec  string `json:"codec"`
		Width  int    `json:"width"`
		Height int    `json:"height"`
	} `json:"video"`
	Audio *struct {
		Codec      string `json:"codec"`
		SampleRate int    `json:"sampleRate"`
	} `json:"audio"`
	Warnings []string `json:"warnings"`
	Rejected []struct {
		MID    string `json:"mid"`
		Kind   string `json:"kind"`
		Reason string `json:"reason"`
	} `json:"rejected"`
}

// liveCase is one publisher run through one path into the ingest.
type liveCase struct {
	path          string // "v1" or "whip"
	video, audio  bool   // what the publisher sends (and the gateway takes)
	width, height int
	rejected      []string // "mid kind" of the tracks the answer must reject
	reasonHas     string   // in the rejection's reason
}

// goLive answers the script's offer through the case's path, broadcasts to
// the in-process ingest and checks the stream view and what the ingest got:
// AVC with the publisher's frame rate and AAC at 48 kHz's frame spacing,
// its audio and video tags interleaved in timestamp order.
// It returns the time from the broadcast's start to the first video tag.
func goLive(t *testing.T, h *harness, p *scriptPublisher, offer string, c liveCase) time.Duration {
	t.Helper()
	name := strings.ReplaceAll(t.Name(), "/", "_")
	var id string
	var start time.Time
	switch c.path {
	case "v1":
		var v offerView
		start = time.Now()
		st, raw := h.call("POST", "/v1/streams", map[string]any{"sdp": offer, "name": name,
			"broadcast": map[string]any{"transcodingTargets": map[string]any{"output": h.ingestURL(), "streamname": name}}}, &v)
		if st != http.StatusCreated {
			t.Fatalf("create stream: %d %s", st, raw)
		}
		checkRejected(t, "create response", v, c)
		id = v.ID
		p.answer(v.SDP)
	case "whip":
		req, _ := http.NewRequest("POST", h.srv.URL+"/whip", strings.NewReader(offer))
		req.Header.Set("Content-Type", "application/sdp")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("WHIP: %d %s", resp.StatusCode, answer)
		}
		id = strings.TrimPrefix(resp.Header.Get("Location"), "/whip/")
		hdrs := resp.Header.Values("X-Castbridge-Rejected-Track")
		if len(hdrs) != len(c.rejected) {
			t.Errorf("WHIP rejected-track headers %q, want %d", hdrs, len(c.rejected))
		}
		for i, r := range c.rejected {
			mid, kind, _ := strings.Cut(r, " ")
			if i < len(hdrs) && (!strings.HasPrefix(hdrs[i], `mid="`+mid+`"; kind=`+kind+`; reason="`) || !strings.Contains(hdrs[i], c.reasonHas)) {
				t.Errorf("WHIP header %q, want mid %s kind %s with %q", hdrs[i], mid, kind, c.reasonHas)
			}
		}
		if link := resp.Header.Get("Link"); link != "</v1/streams/"+id+`>; rel="describedby"` {
			t.Errorf("WHIP Link %q", link)
		}
		p.answer(string(answer))
		h.waitState(id, "connected", 15*time.Second)
		start = time.Now()
		h.startTargets(id, map[string]any{"output": h.ingestURL() + "/" + name})
	}
	defer h.closeStream(id)

	// The view: the codecs and the picture size the publisher sends.
	var v offerView
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		h.call("GET", "/v1/streams/"+id, nil, &v)
		if (v.Video != nil) == c.video && (v.Audio != nil) == c.audio && v.State == "live" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	checkRejected(t, "stream view", v, c)
	if c.video && (v.Video == nil || v.Video.Codec != "H264" || v.Video.Width != c.width || v.Video.Height != c.height) {
		t.Errorf("view video %+v, want H264 %dx%d", v.Video, c.width, c.height)
	}
	if !c.video && v.Video != nil {
		t.Errorf("view video %+v, want none", v.Video)
	}
	if c.audio && (v.Audio == nil || v.Audio.Codec != "opus" || v.Audio.SampleRate != 48000) {
		t.Errorf("view audio %+v, want opus 48000", v.Audio)
	}
	if !c.audio && v.Audio != nil {
		t.Errorf("view audio %+v, want none", v.Audio)
	}
	if v.State != "live" {
		t.Fatalf("stream state %q, want live", v.State)
	}

	// The ingest: 3 s of media after the first frame.
	var firstVideo time.Duration
	deadline = time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		_, msgs := h.rec.get(name)
		var seen bool
		for _, m := range msgs {
			if m.msg.Type == flv.TagVideo && len(m.msg.Body) > 1 && m.msg.Body[1] == 1 {
				if firstVideo == 0 {
					firstVideo = m.at.Sub(start)
				}
				seen = true
				break
			}
			if !c.video && m.msg.Type == flv.TagAudio {
				seen = true
				break
			}
		}
		if seen {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c.video && firstVideo == 0 {
		t.Fatalf("no video frame at the ingest in 20 s")
	}
	time.Sleep(3 * time.Second)
	// The video pipeline runs on the socket reader (video never decodes).
	var minInline uint64
	if c.video {
		minInline = 100
	}
	h.checkFastPath(150, minInline)
	_, msgs := h.rec.get(name)
	if back := maxBackStep(msgs); back != 0 {
		t.Errorf("the ingest's audio and video tags step back in timestamp by up to %d ms", back)
	}

	frames := videoFramesOf(t, msgs)
	if c.video {
		if len(frames) < 30 || !frames[0].keyframe {
			t.Fatalf("%d video frames at the ingest (first keyframe %v), want a keyframe first and >= 30 in 3 s", len(frames), len(frames) > 0 && frames[0].keyframe)
		}
		var d []float64
		for i := 1; i < len(frames); i++ {
			if frames[i].ts < frames[i-1].ts {
				t.Fatalf("video timestamps go back: %d after %d", frames[i].ts, frames[i-1].ts)
			}
			d = append(d, float64(frames[i].ts-frames[i-1].ts))
		}
		slices.Sort(d)
		if med := d[len(d)/2]; med < 25 || med > 42 {
			t.Errorf("median video frame spacing %.0f ms, want ~33 (30 fps)", med)
		}
		span := frames[len(frames)-1].ts - frames[0].ts
		t.Logf("video: %d AVC frames over %d ms at the ingest, median spacing %.0f ms; broadcast start -> first video tag %v",
			len(frames), span, d[len(d)/2], firstVideo.Round(time.Millisecond))
	} else if len(frames) != 0 {
		t.Errorf("%d video frames at the ingest from an audio-only stream", len(frames))
	}

	// AAC: the publisher's audio, or the gateway's silence for video alone.
	var aacTs []uint32
	for _, m := range msgs {
		b := m.msg.Body
		if m.msg.Type != flv.TagAudio || len(b) < 2 {
			continue
		}
		if b[0]>>4 != 10 {
			t.Fatalf("audio tag of sound format %d, want 10 (AAC)", b[0]>>4)
		}
		if b[1] == 1 {
			aacTs = append(aacTs, m.msg.Timestamp)
		}
	}
	if len(aacTs) < 90 {
		t.Fatalf("%d AAC frames at the ingest, want >= 90 (3 s at 46.9/s)", len(aacTs))
	}
	for i := 1; i < len(aacTs); i++ {
		if aacTs[i] < aacTs[i-1] {
			t.Fatalf("AAC timestamps go back: %d after %d", aacTs[i], aacTs[i-1])
		}
	}
	span := float64(aacTs[len(aacTs)-1] - aacTs[0])
	if per := span / float64(len(aacTs)-1); per < 19 || per > 24 {
		t.Errorf("AAC frames %.1f ms apart on average, want 21.3 (1024 samples at 48 kHz)", per)
	}
	t.Logf("audio: %d AAC frames over %.0f ms", len(aacTs), span)
	return firstVideo
}

func checkRejected(t *testing.T, where string, v offerView, c liveCase) {
	t.Helper()
	var got []string
	for _, r := range v.Rejected {
		got = append(got, r.MID+" "+r.Kind)
		if !strings.Contains(r.Reason, c.reasonHas) {
			t.Errorf("%s: rejection reason %q lacks %q", where, r.Reason, c.reasonHas)
		}
	}
	if v.Rejected == nil || !slices.Equal(got, c.rejected) {
		t.Errorf("%s: rejected %v (nil: %v), want %v", where, got, v.Rejected == nil, c.rejected)
	}
}
