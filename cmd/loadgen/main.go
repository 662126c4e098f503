// Command loadgen measures a WebRTC-to-RTMP gateway: it starts N pion
// publishers of the test media (testdata/video-2500k.h264 + audio.ogg, looped),
// publishes them through castbridge's /v1 API (or any WHIP endpoint), has
// each stream broadcast to its own path on a built-in RTMP sink, ramps up,
// holds, ramps down and stops by itself. It reports publishers connected,
// frames sent and received at the sink, per-frame latency from the
// publisher's last RTP packet to the sink's receipt of the FLV tag (one
// clock: both ends are in this process), and, given the gateway's pid, the
// gateway's CPU (user+sys) and RSS per stream during the hold.
//
//	go build -o /tmp/castbridge ./cmd/castbridge
//	/tmp/castbridge --local-ingest= --http-addr 127.0.0.1:18080 --ice-ips 127.0.0.1 &
//	go run ./cmd/loadgen --gateway-pid $! --sweep 1,10,50,100 --json perf.json --plot perf.svg
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		if errors.Is(err, errNotSaturated) {
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// run parses the flags, runs every stream count asked for and writes the
// reports.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, counts, out, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if out.replot != "" {
		return replot(out, stdout)
	}
	if out.saturated != "" {
		return checkSaturated(stdout, out.saturated)
	}
	if out.compare != "" {
		runs, err := compare(stdout, out.compare, out.compareBase, out.floorNs)
		if err != nil {
			return fmt.Errorf("--compare: %w", err)
		}
		if out.plot != "" {
			svg, err := plotCompareSVG(runs)
			if err != nil {
				return fmt.Errorf("--compare: %w", err)
			}
			if err := os.WriteFile(out.plot, []byte(svg), 0o644); err != nil {
				return fmt.Errorf("--plot: %w", err)
			}
		}
		return nil
	}
	cfg.Logf = func(format string, args ...any) { fmt.Fprintf(stderr, "loadgen: "+format+"\n", args...) }
	lg, err := New(cfg)
	if err != nil {
		return err
	}
	defer lg.Close()
	if out.cpuProfile != "" {
		// loadgen shares the machine with the server it measures: where
		// its own CPU goes bounds what a saturation search can find.
		f, err := os.Create(out.cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpu-profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpu-profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	var results []Result
	for i, n := range counts {
		if i > 0 && cfg.Pause > 0 {
			// let the gateway settle (closed sessions, GC) between runs
			select {
			case <-time.After(cfg.Pause):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(stderr, "loadgen: %d stream(s): ramp %s, hold %s\n", n, cfg.Ramp, cfg.Duration)
		r, err := lg.Run(ctx, n)
		if err != nil {
			return fmt.Errorf("%d streams: %w", n, err)
		}
		fmt.Fprintf(stderr, "loadgen: %d stream(s): %d connected, %d/%d frames, p99 %.2f ms, gateway %.3f%% CPU/stream\n",
			n, r.Connected, r.FramesReceived, r.FramesSentAfterKeyframe, r.LatencyMs.P99, r.CPUPercentPerStream)
		results = append(results, r)
	}
	if len(results) == 0 {
		return ctx.Err()
	}
	if err := writeTable(stdout, results, lg.Info()); err != nil {
		return err
	}
	if out.json != "" {
		if err := writeJSONFile(out.json, results, out.sweep); err != nil {
			return err
		}
	}
	if out.plot != "" {
		if err := os.WriteFile(out.plot, []byte(plotSVG(results)), 0o644); err != nil {
			return fmt.Errorf("--plot: %w", err)
		}
	}
	return nil
}

type outputs struct {
	json, plot string
	replot     string
	sweep      bool
	// compare is a directory of side-by-side results (compare.go);
	// compareBase the server the ratios are of; floorNs the UDP+SRTP floor.
	compare, compareBase string
	floorNs              float64
	saturated            string
	cpuProfile           string // loadgen's own CPU profile, of every run
}

func parseFlags(args []string, stderr io.Writer) (Config, []int, outputs, error) {
	var cfg Config
	var out outputs
	var streams int
	var sweep string
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Target, "target", "http://127.0.0.1:18080", "base URL of castbridge's API (its /v1 is used to create streams and start broadcasts)")
	fs.StringVar(&cfg.WHIPURL, "whip-url", "", "publish over WHIP to this endpoint instead of /v1/streams ({n} is replaced by the stream's number); the broadcast is then started through --target's API when --target is given explicitly, else the server must push stream n to <sink>/live/lg<n> by itself")
	fs.StringVar(&cfg.APIKey, "api-key", "", "bearer token for the API and WHIP")
	fs.StringVar(&cfg.SinkAddr, "sink-addr", "127.0.0.1:19400", "listen address of the built-in RTMP sink the streams are broadcast to")
	fs.StringVar(&cfg.SinkHost, "sink-host", "", "host:port the gateway should use to reach the sink (default: --sink-addr)")
	fs.IntVar(&streams, "streams", 1, "number of publishers")
	fs.StringVar(&sweep, "sweep", "", "comma list of stream counts to run one after another (e.g. 1,10,50,100); overrides --streams")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "hold: how long all streams run together once live (CPU, RSS and latency are measured over it)")
	fs.DurationVar(&cfg.Ramp, "ramp", 5*time.Second, "ramp-up (streams started evenly over it) and ramp-down (stopped evenly over it)")
	fs.DurationVar(&cfg.Pause, "pause", 3*time.Second, "pause between the runs of a sweep")
	fs.DurationVar(&cfg.LiveTimeout, "live-timeout", 20*time.Second, "how long after the ramp-up the streams may take to deliver their first keyframe to the sink")
	fs.IntVar(&cfg.GatewayPID, "gateway-pid", 0, "pid of the gateway process, to read its CPU and RSS from /proc")
	fs.StringVar(&out.json, "json", "", "write the results to this JSON file (an object; an array with --sweep)")
	fs.StringVar(&out.plot, "plot", "", "write an SVG plot of CPU%/stream and latency p99 against stream count")
	fs.StringVar(&out.replot, "replot", "", "run nothing: read results (a JSON array or object written by --json) from this file and print their table, and write --plot and --json from them")
	fs.StringVar(&out.compare, "compare", "", "run nothing: read the side-by-side results in this directory (files <pair|sat>_<job>_<streams>_<rep>_<server>.json, as scripts/bench.sh --vs writes them), print per-pair ratios and the saturation search, and write --plot from them")
	fs.StringVar(&out.compareBase, "compare-base", "castbridge", "with --compare: the server whose figures are divided by the others'")
	fs.Float64Var(&out.floorNs, "floor-ns", 0, "with --compare: the UDP receive + SRTP decrypt floor in ns per packet, to print each server's CPU per packet as a multiple of it")
	fs.StringVar(&out.cpuProfile, "cpu-profile", "", "write loadgen's own CPU profile (pprof) over its runs to this file")
	fs.StringVar(&out.saturated, "saturated", "", "run nothing: read one result written by --json and exit 0 if the run was saturated (a stream not live, a frame lost, or p99 > 50 ms), 1 if not")
	fs.Float64Var(&cfg.Pacing, "pacing", 2.5, "publishers pace video at this multiple of the material's bit rate like a browser's WebRTC pacer (bursts of up to 40 ms at that rate); 0 sends each frame's packets back to back")
	fs.StringVar(&cfg.VideoFile, "video", "", "Annex B H.264 file (default testdata/video-2500k.h264)")
	fs.StringVar(&cfg.AudioFile, "audio", "", "Ogg Opus file (default testdata/audio.ogg); \"none\" for video only")
	fs.StringVar(&cfg.VideoCodec, "video-codec", "", "the publishers' video codec and the targets' videocodec: \"vp9\", \"av1\" or \"hevc\" (--video an IVF or H.265 Annex B file, e.g. testdata/video-vp9.ivf); default H.264")
	fs.StringVar(&cfg.AudioCodec, "audio-codec", "", "the targets' audiocodec: \"aac\" (castbridge's default: Opus transcoded to AAC) or \"opus\" (passed through)")
	fs.IntVar(&cfg.Concurrency, "setup-concurrency", 8, "most stream set-ups (offer, ICE gathering, POST) in flight at once")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: loadgen [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, nil, out, err
	}
	if fs.NArg() > 0 {
		return cfg, nil, out, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	targetGiven := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "target" {
			targetGiven = true
		}
	})
	if cfg.WHIPURL != "" && !targetGiven {
		cfg.Target = ""
	}
	counts := []int{streams}
	if sweep != "" {
		counts = counts[:0]
		for _, s := range strings.Split(sweep, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				return cfg, nil, out, fmt.Errorf("--sweep: %q is not a positive stream count", s)
			}
			counts = append(counts, n)
		}
		if len(counts) == 0 {
			return cfg, nil, out, errors.New("--sweep: no stream counts")
		}
		out.sweep = true
	}
	if streams <= 0 {
		return cfg, nil, out, errors.New("--streams must be positive")
	}
	if cfg.Duration <= 0 {
		return cfg, nil, out, errors.New("--duration must be positive")
	}
	if cfg.Ramp < 0 {
		return cfg, nil, out, errors.New("--ramp must not be negative")
	}
	if cfg.Target == "" && cfg.WHIPURL == "" {
		return cfg, nil, out, errors.New("--target or --whip-url is needed")
	}
	return cfg, counts, out, nil
}

// replot re-renders results saved by --json (for instance runs of a sweep
// joined by hand).
func replot(out outputs, stdout io.Writer) error {
	raw, err := os.ReadFile(out.replot)
	if err != nil {
		return err
	}
	var rs []Result
	if err := json.Unmarshal(raw, &rs); err != nil {
		var r Result
		if err2 := json.Unmarshal(raw, &r); err2 != nil {
			return fmt.Errorf("--replot: %w", err)
		}
		rs = []Result{r}
	}
	if err := writeTable(stdout, rs, Info{}); err != nil {
		return err
	}
	if out.json != "" {
		if err := writeJSONFile(out.json, rs, true); err != nil {
			return err
		}
	}
	if out.plot != "" {
		return os.WriteFile(out.plot, []byte(plotSVG(rs)), 0o644)
	}
	return nil
}
