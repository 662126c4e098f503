package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/transmux/format/mediafile"
)

// Config configures a LoadGen.
type Config struct {
	// Target is the base URL of castbridge's API ("" with WHIPURL alone).
	Target string
	// WHIPURL, when set, is where the publishers POST their offers instead
	// of /v1/streams; {n} is replaced by the stream's number.
	WHIPURL string
	APIKey  string
	// SinkAddr is the built-in RTMP sink's listen address; SinkHost is the
	// host:port the gateway is told to publish to ("" = the sink's address).
	SinkAddr, SinkHost string
	// Duration is the hold; Ramp the ramp-up and the ramp-down each.
	Duration, Ramp time.Duration
	// Pause separates the runs of a sweep (used by the command only).
	Pause time.Duration
	// LiveTimeout bounds the wait, after the ramp-up, for every connected
	// stream's first frame at the sink.
	LiveTimeout time.Duration
	// GatewayPID, when non-zero, is read from /proc for CPU and RSS.
	GatewayPID int
	// VideoFile and AudioFile default to the test media; AudioFile "none"
	// publishes video only.
	VideoFile, AudioFile string
	// AudioCodec, when set, is the targets' audiocodec ("aac" or "opus").
	AudioCodec string
	// VideoCodec, when set, is the publishers' video codec ("vp9", "av1",
	// "hevc": VideoFile an IVF or H.265 Annex B file) and the targets'
	// videocodec; "" is H.264.
	VideoCodec string
	// Pacing is the publishers' video pacing rate as a multiple of the
	// material's bit rate (a browser's WebRTC pacer uses 2.5, with bursts of
	// up to 40 ms at that rate); 0 writes each frame's packets back to back,
	// the burstiest a publisher can be.
	Pacing float64
	// Concurrency bounds stream set-ups in flight (0 = 8).
	Concurrency int
	// Drain is how long a stream's session stays up after its publisher
	// stopped sending, so that frames in flight reach the sink (0 = 1 s).
	Drain time.Duration
	// HTTPClient defaults to a client with a 30 s timeout.
	HTTPClient *http.Client
	// Logf, when set, receives progress and per-stream errors.
	Logf func(format string, args ...any)
}

// Latency holds percentiles in milliseconds.
type Latency struct {
	P50     float64 `json:"p50"`
	P95     float64 `json:"p95"`
	P99     float64 `json:"p99"`
	Max     float64 `json:"max"`
	Samples int     `json:"samples"`
}

// Result is one run's report.
type Result struct {
	Streams   int `json:"streams"`
	Connected int `json:"connected"`
	// Live is how many streams delivered a frame to the sink.
	Live int `json:"live"`
	// FramesSent counts every video frame the publishers sent;
	// FramesSentAfterKeyframe only those from each stream's first frame
	// received at the sink on (what the gateway could forward at all).
	FramesSent              int `json:"framesSent"`
	FramesSentAfterKeyframe int `json:"framesSentAfterKeyframe"`
	// FramesReceived counts the sink's video frames matched to a sent frame
	// (by slice digest, in order); FramesUnmatched those matching none.
	FramesReceived  int     `json:"framesReceived"`
	FramesUnmatched int     `json:"framesUnmatched"`
	FramesLost      int     `json:"framesLost"`
	LossPercent     float64 `json:"lossPercent"`
	// LostInRampUp, LostInHold and LostInRampDown split FramesLost by when
	// the lost frame was sent.
	LostInRampUp   int `json:"lostInRampUp"`
	LostInHold     int `json:"lostInHold"`
	LostInRampDown int `json:"lostInRampDown"`
	// LatencyAllMs is LatencyMs over every frame received, ramps included.
	LatencyAllMs Latency `json:"latencyAllMs"`
	// Gateway* come from castbridge's own /v1/streams/{id}/stats at the end
	// of the hold (with --target): video frames dropped (inbound, broken,
	// and by the target's queue), RTP packets lost, and the largest of the
	// targets' own latency p99 (last RTP packet of a frame -> FLV tag
	// written to the ingest socket).
	GatewayFramesDropped int     `json:"gatewayFramesDropped"`
	GatewayPacketsLost   int     `json:"gatewayPacketsLost"`
	GatewayLatencyP99Ms  float64 `json:"gatewayLatencyP99MsMax"`
	// LatencyMs is publisher send (last RTP packet of a frame written) to
	// sink receive (FLV tag parsed), over the frames sent during the hold.
	LatencyMs Latency `json:"latencyMs"`
	// CPUPercent is the gateway's user+sys time over the hold in percent of
	// one core; CPUPercentPerStream divides it by the streams.
	// GatewayCPUPercent is the gateway process's alone, ChildrenCPUPercent
	// its child processes' (transcoders some gateways spawn); CPUPercent their sum.
	CPUPercent          float64 `json:"cpuPercent"`
	CPUPercentPerStream float64 `json:"cpuPercentPerStream"`
	GatewayCPUPercent   float64 `json:"gatewayCpuPercent"`
	ChildrenCPUPercent  float64 `json:"childrenCpuPercent"`
	GatewayChildren     int     `json:"gatewayChildren"`
	// RSSMB is the gateway's largest VmRSS seen during the hold,
	// RSSBaselineMB its VmRSS before the first stream of the process was
	// started; ChildrenRSSMB the largest sum of its children's VmRSS;
	// RSSMBPerStream is (RSSMB+ChildrenRSSMB-RSSBaselineMB)/streams.
	RSSMB          float64 `json:"rssMB"`
	ChildrenRSSMB  float64 `json:"childrenRssMB"`
	RSSBaselineMB  float64 `json:"rssBaselineMB"`
	RSSMBPerStream float64 `json:"rssMBPerStream"`
	// GatewayNsPerPacket is the gateway's CPU time per RTP packet received
	// (video and audio, from the material's packet rate).
	GatewayNsPerPacket float64 `json:"gatewayNsPerPacket"`
	PacketsPerSecond   float64 `json:"packetsPerSecondPerStream"`
	// LoadgenCPUPercent is this process's own CPU (publishers and sink) in
	// percent of one core; HostCPUBusyPercent the whole machine's busy time
	// in percent of all its cores, both over the hold.
	LoadgenCPUPercent  float64 `json:"loadgenCpuPercent"`
	HostCPUBusyPercent float64 `json:"hostCpuBusyPercent"`
	HostCPUs           int     `json:"hostCpus"`
	HoldSeconds        float64 `json:"holdSeconds"`
	// LoadAvgBefore and LoadAvgAfter are the machine's 1-minute load
	// average when the run started and when its last stream was torn down:
	// on a shared machine they say how much else was running.
	LoadAvgBefore float64  `json:"loadAvgBefore"`
	LoadAvgAfter  float64  `json:"loadAvgAfter"`
	NACKs         int      `json:"nacksReceivedByPublishers"`
	PLIs          int      `json:"plisReceivedByPublishers"`
	Errors        []string `json:"errors,omitempty"`
}

// Info describes the load generator's material and host.
type Info struct {
	VideoKbps       float64
	VideoPPS        float64 // RTP packets per second of one stream's video
	AudioPPS        float64
	PacketsPerFrame float64
	Pacing          float64 // Config.Pacing
	HostCPUs        int
	GatewayPID      int
}

// LoadGen runs loads against one gateway, with one RTMP sink.
type LoadGen struct {
	cfg      Config
	sink     *sink
	sinkURL  string
	client   *http.Client
	info     Info
	baseline float64 // gateway RSS MB before any stream
	next     atomic.Int64
}

// New starts the sink and takes the gateway's baseline RSS.
func New(cfg Config) (*LoadGen, error) {
	if cfg.VideoFile == "" {
		cfg.VideoFile = mediafile.TestdataPath("video-2500k.h264")
	}
	switch cfg.AudioFile {
	case "":
		cfg.AudioFile = mediafile.TestdataPath("audio.ogg")
	case "none":
		cfg.AudioFile = ""
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Drain <= 0 {
		cfg.Drain = time.Second
	}
	if cfg.LiveTimeout <= 0 {
		cfg.LiveTimeout = 20 * time.Second
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	cfg.Target = strings.TrimRight(cfg.Target, "/")
	lg := &LoadGen{cfg: cfg, client: cfg.HTTPClient}
	if lg.client == nil {
		lg.client = &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
		}
	}
	if err := lg.readMaterial(); err != nil {
		return nil, err
	}
	s, err := startSink(cfg.SinkAddr)
	if err != nil {
		return nil, err
	}
	lg.sink = s
	host := cfg.SinkHost
	if host == "" {
		host = s.srv.Addr().String()
	}
	lg.sinkURL = "rtmp://" + host + "/live"
	if cfg.GatewayPID != 0 {
		rss, err := readRSSMB(cfg.GatewayPID)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("--gateway-pid: %w", err)
		}
		lg.baseline = rss
	}
	lg.info.HostCPUs = runtime.NumCPU()
	lg.info.GatewayPID = cfg.GatewayPID
	return lg, nil
}

// Close stops the sink.
func (lg *LoadGen) Close() { lg.sink.close() }

// Info describes the material and the host.
func (lg *LoadGen) Info() Info { return lg.info }

// readMaterial computes the material's RTP packet rate, packetized as the
// publisher does (MTU 1200: single NAL units up to 1188 bytes, FU-A beyond,
// SPS+PPS in one STAP-A, AUDs and filler skipped).
func (lg *LoadGen) readMaterial() error {
	frames, err := gatewaytest.ReadVideoFrames(lg.cfg.VideoCodec, lg.cfg.VideoFile)
	if err != nil {
		return err
	}
	if len(frames) == 0 {
		return errors.New("no video frames in " + lg.cfg.VideoFile)
	}
	const maxPayload = 1200 - 12
	if lg.cfg.VideoCodec != "" {
		// VP9, AV1, H.265: each unit in packets of maxPayload, roughly
		// what the payloaders make.
		pkts, bytes := 0, 0
		for _, f := range frames {
			for _, u := range f.NALUs {
				bytes += len(u)
				pkts += (len(u) + maxPayload - 4) / (maxPayload - 3)
			}
		}
		lg.info.Pacing = lg.cfg.Pacing
		lg.info.PacketsPerFrame = float64(pkts) / float64(len(frames))
		lg.info.VideoPPS = lg.info.PacketsPerFrame * 30
		lg.info.VideoKbps = float64(bytes) * 8 / (float64(len(frames)) / 30) / 1000
		if lg.cfg.AudioFile != "" {
			lg.info.AudioPPS = 50
		}
		return nil
	}
	pkts, bytes := 0, 0
	for _, f := range frames {
		stap := 0
		for _, n := range f.NALUs {
			if len(n) == 0 {
				continue
			}
			bytes += len(n)
			switch n[0] & 0x1f {
			case 9, 12:
				continue
			case 7, 8:
				if stap == 0 {
					pkts++
				}
				stap++
				continue
			}
			if len(n) <= maxPayload {
				pkts++
			} else {
				pkts += (len(n) - 1 + maxPayload - 3) / (maxPayload - 2)
			}
		}
	}
	lg.info.Pacing = lg.cfg.Pacing
	lg.info.PacketsPerFrame = float64(pkts) / float64(len(frames))
	lg.info.VideoPPS = lg.info.PacketsPerFrame * 30
	lg.info.VideoKbps = float64(bytes) * 8 / (float64(len(frames)) / 30) / 1000
	if lg.cfg.AudioFile != "" {
		lg.info.AudioPPS = 50 // 20 ms Opus packets
	}
	return nil
}

// stream is one publisher and its session.
type stream struct {
	n         int64
	name      string // sink publish name
	pub       *gatewaytest.Publisher
	cancel    context.CancelFunc
	location  string // URL to DELETE at the end
	sink      *sinkStream
	err       error
	connected bool
	down      sync.Once
}

// Run runs n streams: ramp-up, wait for them to be live, hold, ramp-down.
func (lg *LoadGen) Run(ctx context.Context, n int) (Result, error) {
	res := Result{Streams: n, HostCPUs: lg.info.HostCPUs, RSSBaselineMB: lg.baseline, LoadAvgBefore: readLoadAvg()}
	streams := make([]*stream, n)
	for i := range streams {
		num := lg.next.Add(1)
		st := &stream{n: num, name: "lg" + strconv.FormatInt(num, 10)}
		st.sink = lg.sink.register(st.name)
		streams[i] = st
	}
	defer func() {
		for _, st := range streams {
			lg.sink.unregister(st.name)
		}
	}()

	// Ramp-up: stream i starts at i*ramp/n.
	sem := make(chan struct{}, lg.cfg.Concurrency)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i, st := range streams {
		at := t0.Add(time.Duration(int64(lg.cfg.Ramp) * int64(i) / int64(n)))
		if !gatewaytest.SleepUntil(ctx, at) {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			st.err = lg.setup(ctx, st)
			if st.err != nil {
				lg.cfg.Logf("stream %s: %v", st.name, st.err)
			}
		})
	}
	wg.Wait()
	defer func() {
		// whatever happened, end every session
		var wg sync.WaitGroup
		for _, st := range streams {
			wg.Add(1)
			go func() { defer wg.Done(); lg.teardown(st) }()
		}
		wg.Wait()
	}()
	for _, st := range streams {
		if st.err == nil {
			select {
			case <-st.pub.Connected():
			case <-time.After(10 * time.Second):
				st.err = errors.New("not connected after 10 s")
			case <-ctx.Done():
				return res, ctx.Err()
			}
		}
		if st.err == nil {
			st.connected = true
			res.Connected++
		}
	}
	// Wait for the first frame of every connected stream at the sink.
	deadline := time.Now().Add(lg.cfg.LiveTimeout)
	for _, st := range streams {
		if !st.connected {
			continue
		}
		for !st.sink.live() && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
		if st.sink.live() {
			res.Live++
		}
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	lg.cfg.Logf("%d/%d connected, %d live after %s; holding %s", res.Connected, n, res.Live,
		time.Since(t0).Round(time.Millisecond), lg.cfg.Duration)

	// Hold.
	holdStart := time.Now()
	gw0, gwErr := readTree(lg.cfg.GatewayPID)
	self0 := selfCPU()
	host0, hostErr := readHostCPU()
	var rssMax, childRSSMax float64
	rssDone := make(chan struct{})
	rssStop := make(chan struct{})
	sampleRSS := func() {
		if lg.cfg.GatewayPID == 0 {
			return
		}
		if u, err := readTree(lg.cfg.GatewayPID); err == nil {
			rssMax = max(rssMax, u.selfRSS)
			childRSSMax = max(childRSSMax, u.childrenRSS)
			res.GatewayChildren = max(res.GatewayChildren, u.nChildren)
		}
	}
	go func() {
		defer close(rssDone)
		tk := time.NewTicker(500 * time.Millisecond)
		defer tk.Stop()
		for {
			sampleRSS()
			select {
			case <-tk.C:
			case <-rssStop:
				return
			}
		}
	}()
	gatewaytest.SleepUntil(ctx, holdStart.Add(lg.cfg.Duration))
	close(rssStop)
	<-rssDone
	holdEnd := time.Now()
	hold := holdEnd.Sub(holdStart).Seconds()
	res.HoldSeconds = hold
	if lg.cfg.GatewayPID != 0 && gwErr == nil {
		if gw1, err := readTree(lg.cfg.GatewayPID); err == nil {
			res.GatewayCPUPercent = (gw1.self - gw0.self).Seconds() / hold * 100
			res.ChildrenCPUPercent = max(0, (gw1.children-gw0.children).Seconds()/hold*100)
			res.CPUPercent = res.GatewayCPUPercent + res.ChildrenCPUPercent
			res.CPUPercentPerStream = res.CPUPercent / float64(n)
		}
		sampleRSS()
		res.RSSMB = rssMax
		res.ChildrenRSSMB = childRSSMax
		res.RSSMBPerStream = (rssMax + childRSSMax - lg.baseline) / float64(n)
	}
	res.LoadgenCPUPercent = (selfCPU() - self0).Seconds() / hold * 100
	if host1, err := readHostCPU(); err == nil && hostErr == nil && host1.total > host0.total {
		res.HostCPUBusyPercent = float64(host1.busy-host0.busy) / float64(host1.total-host0.total) * 100
	}
	res.PacketsPerSecond = lg.info.VideoPPS + lg.info.AudioPPS
	if res.CPUPercentPerStream > 0 && res.PacketsPerSecond > 0 {
		res.GatewayNsPerPacket = res.CPUPercentPerStream / 100 * 1e9 / res.PacketsPerSecond
	}

	// Ramp-down: stream i stops sending at i*ramp/n after the hold; its
	// session ends Drain later. The gateway's own stats of the stream are
	// read just before it stops.
	var down sync.WaitGroup
	var statsMu sync.Mutex
	for i, st := range streams {
		gatewaytest.SleepUntil(context.Background(), holdEnd.Add(time.Duration(int64(lg.cfg.Ramp)*int64(i)/int64(n))))
		down.Go(func() {
			if st.pub == nil {
				return
			}
			if st.err == nil {
				sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
				gs := lg.gatewayStats(sctx, st)
				scancel()
				statsMu.Lock()
				res.GatewayPacketsLost += gs.GatewayPacketsLost
				res.GatewayFramesDropped += gs.GatewayFramesDropped
				res.GatewayLatencyP99Ms = max(res.GatewayLatencyP99Ms, gs.GatewayLatencyP99Ms)
				statsMu.Unlock()
			}
			st.cancel()
			st.pub.Wait()
			time.Sleep(lg.cfg.Drain)
			lg.teardown(st)
		})
	}
	down.Wait()
	res.LoadAvgAfter = readLoadAvg()

	lg.account(&res, streams, holdStart, holdEnd)
	lg.cfg.Logf("lost: %d in ramp-up, %d in hold, %d in ramp-down; latency over all frames p99 %.2f ms",
		res.LostInRampUp, res.LostInHold, res.LostInRampDown, res.LatencyAllMs.P99)
	return res, nil
}

// setup creates the publisher, its session and (through the API) its
// broadcast, and starts sending.
func (lg *LoadGen) setup(ctx context.Context, st *stream) error {
	pub, err := gatewaytest.NewPublisher(gatewaytest.PublisherConfig{
		VideoCodec: lg.cfg.VideoCodec,
		VideoFile:  lg.cfg.VideoFile,
		AudioFile:  lg.cfg.AudioFile,
		Loop:       true,
		PacingRate: int(lg.cfg.Pacing * lg.info.VideoKbps * 1000),
	})
	if err != nil {
		return err
	}
	st.pub = pub
	pctx, cancel := context.WithCancel(context.Background())
	st.cancel = cancel
	octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
	defer ocancel()
	offer, err := pub.Offer(octx)
	if err != nil {
		return fmt.Errorf("offer: %w", err)
	}
	target := map[string]any{"output": lg.sinkURL, "streamname": st.name}
	if lg.cfg.AudioCodec != "" {
		target["audiocodec"] = lg.cfg.AudioCodec
	}
	if lg.cfg.VideoCodec != "" {
		target["videocodec"] = lg.cfg.VideoCodec
	}
	broadcast := map[string]any{"targets": []map[string]any{target}}
	var answer string
	if lg.cfg.WHIPURL != "" {
		u := strings.ReplaceAll(lg.cfg.WHIPURL, "{n}", strconv.FormatInt(st.n, 10))
		status, body, hdr, err := lg.do(ctx, "POST", u, "application/sdp", []byte(offer))
		if err != nil {
			return fmt.Errorf("whip: %w", err)
		}
		if status != http.StatusCreated {
			return fmt.Errorf("whip: %d %s", status, trim(body))
		}
		answer = string(body)
		loc, err := url.Parse(u)
		if err == nil {
			if l, perr := loc.Parse(hdr.Get("Location")); perr == nil {
				st.location = l.String()
			}
		}
		if lg.cfg.Target != "" && st.location != "" {
			id := path.Base(st.location)
			defer func() {
				// the session must be connected before it can broadcast
				go lg.startBroadcastWhenConnected(ctx, st, id, broadcast)
			}()
		}
	} else {
		req, _ := json.Marshal(map[string]any{"sdp": offer, "name": st.name, "broadcast": broadcast})
		status, body, _, err := lg.do(ctx, "POST", lg.cfg.Target+"/v1/streams", "application/json", req)
		if err != nil {
			return fmt.Errorf("create stream: %w", err)
		}
		if status != http.StatusCreated {
			return fmt.Errorf("create stream: %d %s", status, trim(body))
		}
		var sv struct {
			ID  string `json:"id"`
			SDP string `json:"sdp"`
		}
		if err := json.Unmarshal(body, &sv); err != nil {
			return fmt.Errorf("create stream: %w", err)
		}
		answer = sv.SDP
		st.location = lg.cfg.Target + "/v1/streams/" + sv.ID
	}
	if err := pub.SetAnswer(answer); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	pub.Start(pctx)
	return nil
}

func (lg *LoadGen) startBroadcastWhenConnected(ctx context.Context, st *stream, id string, broadcast map[string]any) {
	select {
	case <-st.pub.Connected():
	case <-time.After(10 * time.Second):
		return
	case <-ctx.Done():
		return
	}
	body, _ := json.Marshal(broadcast)
	for i := 0; i < 50; i++ {
		status, resp, _, err := lg.do(ctx, "POST", lg.cfg.Target+"/v1/streams/"+id+"/broadcast", "application/json", body)
		if err == nil && status == http.StatusCreated {
			return
		}
		if err == nil && status != http.StatusConflict && !bytes.Contains(resp, []byte("NOT_CONNECTED")) {
			lg.cfg.Logf("stream %s: broadcast: %d %s", st.name, status, trim(resp))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// teardown ends the session and closes the publisher; it is idempotent.
func (lg *LoadGen) teardown(st *stream) {
	if st.pub == nil {
		return
	}
	st.down.Do(func() { lg.end(st) })
}

func (lg *LoadGen) end(st *stream) {
	st.cancel()
	if loc := st.location; loc != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		status, body, _, err := lg.do(ctx, "DELETE", loc, "", nil)
		cancel()
		if err != nil {
			lg.cfg.Logf("stream %s: delete: %v", st.name, err)
		} else if status >= 300 && status != http.StatusNotFound {
			lg.cfg.Logf("stream %s: delete: %d %s", st.name, status, trim(body))
		}
	}
	_ = st.pub.Close()
}

func (lg *LoadGen) do(ctx context.Context, method, u, ctype string, body []byte) (int, []byte, http.Header, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if lg.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+lg.cfg.APIKey)
	}
	resp, err := lg.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, b, resp.Header, err
}

// matchFrames pairs each frame the sink received with the index of the
// frame the publisher sent (-1 where none matches). Frames arrive in order;
// the material loops, so digests repeat, and the first frame received (an
// IDR) may also have been sent earlier, while the target was not yet live:
// it is the last send of it that began before it arrived. Later frames
// match the next send of their digest within one loop of the material.
func matchFrames(sent []gatewaytest.SentFrame, recv []recvFrame) []int {
	out := make([]int, len(recv))
	j := -1 // index in sent of the last frame matched
	for i, r := range recv {
		k := -1
		if j < 0 {
			for n := range sent {
				if sent[n].Digest == r.digest && sent[n].FirstPacketAt.Before(r.at) {
					k = n
				}
			}
		} else {
			for n := j + 1; n < len(sent) && n <= j+400; n++ {
				if sent[n].Digest == r.digest {
					k = n
					break
				}
			}
		}
		out[i] = k
		if k >= 0 {
			j = k
		}
	}
	return out
}

// account matches the sink's frames to the publishers' and fills in the
// frame counts and latencies.
func (lg *LoadGen) account(res *Result, streams []*stream, holdStart, holdEnd time.Time) {
	var hold, all []time.Duration
	for _, st := range streams {
		if st.err != nil {
			if len(res.Errors) < 10 {
				res.Errors = append(res.Errors, st.name+": "+st.err.Error())
			}
		}
		if st.pub == nil {
			continue
		}
		sent := st.pub.Sent()
		res.FramesSent += len(sent)
		res.NACKs += st.pub.NACKs()
		res.PLIs += st.pub.PLIs()
		recv := st.sink.frames()
		first := -1 // index in sent of the first frame received
		matched := make([]bool, len(sent))
		for i, k := range matchFrames(sent, recv) {
			if k < 0 {
				res.FramesUnmatched++
				continue
			}
			if first < 0 {
				first = k
			}
			res.FramesReceived++
			matched[k] = true
			d := recv[i].at.Sub(sent[k].LastPacketAt)
			all = append(all, d)
			if !sent[k].LastPacketAt.Before(holdStart) && sent[k].LastPacketAt.Before(holdEnd) {
				hold = append(hold, d)
			}
		}
		if first < 0 {
			// nothing arrived: everything from the first IDR on is lost
			for i, f := range sent {
				if f.IDR {
					first = i
					break
				}
			}
		}
		if first >= 0 {
			res.FramesSentAfterKeyframe += len(sent) - first
			for i := first; i < len(sent); i++ {
				switch at := sent[i].LastPacketAt; {
				case matched[i]:
				case at.Before(holdStart):
					res.LostInRampUp++
				case at.Before(holdEnd):
					res.LostInHold++
				default:
					res.LostInRampDown++
				}
			}
		}
	}
	res.FramesLost = max(0, res.FramesSentAfterKeyframe-res.FramesReceived)
	if res.FramesSentAfterKeyframe > 0 {
		res.LossPercent = float64(res.FramesLost) / float64(res.FramesSentAfterKeyframe) * 100
	}
	if len(hold) == 0 {
		hold = all
	}
	res.LatencyAllMs = percentiles(all)
	res.LatencyMs = percentiles(hold)
}

func percentiles(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(d)))) - 1
		i = min(max(i, 0), len(d)-1)
		return float64(d[i].Nanoseconds()) / 1e6
	}
	return Latency{P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: at(1), Samples: len(d)}
}

func trim(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// gatewayStats reads castbridge's own stats of a stream (with --target)
// into the Gateway* fields of a Result.
func (lg *LoadGen) gatewayStats(ctx context.Context, st *stream) (res Result) {
	if lg.cfg.Target == "" || st.location == "" {
		return res
	}
	id := path.Base(st.location)
	status, body, _, err := lg.do(ctx, "GET", lg.cfg.Target+"/v1/streams/"+id+"/stats", "", nil)
	if err != nil || status != http.StatusOK {
		return res
	}
	var s struct {
		Inbound struct {
			Video *struct {
				PacketsLost   int `json:"packetsLost"`
				FramesDropped int `json:"framesDropped"`
			} `json:"video"`
		} `json:"inbound"`
		Targets []struct {
			FramesDropped int     `json:"framesDropped"`
			LatencyP99Ms  float64 `json:"latencyP99Ms"`
		} `json:"targets"`
	}
	if json.Unmarshal(body, &s) != nil {
		return res
	}
	if v := s.Inbound.Video; v != nil {
		res.GatewayPacketsLost += v.PacketsLost
		res.GatewayFramesDropped += v.FramesDropped
	}
	for _, t := range s.Targets {
		res.GatewayFramesDropped += t.FramesDropped
		res.GatewayLatencyP99Ms = max(res.GatewayLatencyP99Ms, t.LatencyP99Ms)
	}
	return res
}
