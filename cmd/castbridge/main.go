// Command castbridge runs the WebRTC-to-RTMP gateway: the HTTP API and WHIP
// endpoint, the shared ICE port, and (by default) an in-process RTMP ingest
// that records what is published to it, so it works with no outside server.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/cluster"
	"github.com/castbridge/castbridge/gateway/events"
	"github.com/castbridge/castbridge/gateway/procs"
	"github.com/castbridge/castbridge/gateway/rtmpout"
	"github.com/castbridge/castbridge/gateway/webhook"
	"github.com/castbridge/castbridge/httpapi"
	"github.com/castbridge/castbridge/httpapi/auth"
	"github.com/castbridge/castbridge/transmux/rtmp/ingest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// go-redis logs every failed dial; the cluster reports an outage once.
	cluster.RouteRedisLogs(slog.Default())
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "castbridge:", err)
		os.Exit(1)
	}
}

// options are castbridge's settings, from flags or CASTBRIDGE_* variables.
type options struct {
	httpAddr         string
	iceUDPPort       int
	iceTCPPort       int
	iceIPs           string
	stun             string
	localIngest      string
	localIngestKey   string
	localIngestConns int
	recordingsDir    string
	recordingsMax    int64
	keyframeInterval time.Duration
	videoGap         time.Duration
	apiKey           string
	logLevel         string
	shutdownTimeout  time.Duration
	config           string
	mediaTimeout     time.Duration
	reconnect        rtmpout.ReconnectPolicy
	pprofAddr        string
	gcPercent        int
	// procs is --gomaxprocs: -1 auto (procs.Run), 0 the runtime's default,
	// else that many; procsFromEnv: GOMAXPROCS in the environment decides.
	procs           int
	procsFromEnv    bool
	gcFromGOGC      bool // GOGC is set and --gc-percent is not: the runtime's own
	rtmpsCA         string
	rtmpResume      time.Duration
	rtmpsCert       string
	rtmpsKey        string
	rtmpsIngest     string
	maxHTTPConns    int
	denyPrivate     bool
	srtpFastPath    bool
	iceReadCoalesce time.Duration
	allowOutputs    string
	maxStreams      int
	maxTargets      int
	maxSSE          int
	tokenKey        string
	tokenSecret     string
	tokenAudience   string
	tokenIssuer     string
	authWebhook     string
	authWebhookTO   time.Duration
	corsOrigins     string
	webhooks        listFlag
	webhookSecret   string
	webhookEvents   string
	videoCodecs     string
	redisURL        string
	nodeID          string
	advertiseURL    string
	clusterSecret   string
	clusterTTL      time.Duration
	drainTimeout    time.Duration
}

// listFlag is a repeatable flag whose each value may also be a comma list.
type listFlag []string

func (l *listFlag) String() string {
	if l == nil {
		return ""
	}
	return fmt.Sprintf("%d URLs", len(*l)) // never the URLs: they may hold tokens
}

func (l *listFlag) Set(v string) error {
	items := splitList(v)
	if len(items) == 0 {
		return errors.New("empty")
	}
	*l = append(*l, items...)
	return nil
}

// parseOptions reads flags; a flag not given on the command line takes its
// CASTBRIDGE_<NAME> environment variable when that is set.
func parseOptions(args []string, getenv func(string) string, out io.Writer) (options, error) {
	var o options
	o.procs = -1 // --gomaxprocs auto
	fs := flag.NewFlagSet("castbridge", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.httpAddr, "http-addr", ":8080", "HTTP API listen address")
	fs.IntVar(&o.iceUDPPort, "ice-udp-port", 8189, "the one UDP port ICE serves every session on")
	fs.IntVar(&o.iceTCPPort, "ice-tcp-port", 0, "the one TCP port of passive ICE-TCP, for publishers whose networks block UDP (0: off)")
	fs.StringVar(&o.iceIPs, "ice-ips", "", "comma-separated IPv4/IPv6 addresses advertised as ICE host candidates, UDP and TCP (default: the host's interface addresses)")
	fs.StringVar(&o.stun, "stun", "", "host:port of a STUN server asked, from the ICE UDP port, for the gateway's public address, which answers then carry as a srflx candidate, e.g. stun.l.google.com:19302 (off when empty; not asked when --ice-ips is given)")
	fs.StringVar(&o.localIngest, "local-ingest", "127.0.0.1:1935", "address of the built-in RTMP ingest that records to --recordings-dir (empty disables it)")
	fs.StringVar(&o.localIngestKey, "local-ingest-key", "", "publish key of the built-in ingest: publishers must use rtmp://host/<app>/<name>?key=<key> (required when --local-ingest is not a loopback address)")
	fs.IntVar(&o.localIngestConns, "local-ingest-max-conns", ingest.DefaultMaxConns, "cap on open connections to the built-in ingest")
	fs.DurationVar(&o.rtmpResume, "rtmp-resume", gateway.DefaultRTMPResume, "how long the stream of an RTMP publisher (a publish to the built-in ingest with a relay key) that disconnected waits for it to come back with the same key, its broadcast and targets going on (0: the disconnect ends the stream)")
	fs.StringVar(&o.rtmpsCert, "rtmps-cert", "", "PEM certificate chain of the built-in ingest's RTMPS listener (--rtmps-ingest); with --rtmps-key")
	fs.StringVar(&o.rtmpsKey, "rtmps-key", "", "PEM private key of --rtmps-cert")
	fs.StringVar(&o.rtmpsIngest, "rtmps-ingest", "127.0.0.1:1936", "address of the built-in ingest's RTMPS listener, served when --rtmps-cert and --rtmps-key are given")
	fs.StringVar(&o.recordingsDir, "recordings-dir", "./recordings", "where the built-in ingest writes <name>.flv")
	fs.Int64Var(&o.recordingsMax, "recordings-max-bytes", 0, "cap on the bytes of all recordings (*.flv) in --recordings-dir; past it recording stops with a warning, publishing goes on (0: no cap)")
	fs.StringVar(&o.videoCodecs, "video-codecs", "h264", "video codecs a stream created without its broadcast (preview first) takes, in order of preference: h264, vp9, av1, hevc (VP9, AV1 and H.265 go out over Enhanced RTMP); a stream created with its broadcast takes its targets' videocodec")
	fs.DurationVar(&o.keyframeInterval, "keyframe-interval", 2*time.Second, "longest gap between keyframes sent to ingests; the publisher is asked (PLI) for more")
	fs.DurationVar(&o.videoGap, "video-gap", time.Second, "when the publisher's video stalls this long while its audio flows, ingests get filler frames (black for H.264, the last picture for VP9/AV1/H.265) until its next keyframe (0: only while muted)")
	fs.StringVar(&o.apiKey, "api-key", "", "when set, /v1 and WHIP calls need Authorization: Bearer <key>")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long SIGTERM waits for broadcasts to stop cleanly")
	fs.StringVar(&o.config, "config", "", "YAML file of OBS relays: stream keys mapped to RTMP targets (see README)")
	fs.DurationVar(&o.mediaTimeout, "media-timeout", 10*time.Second, "end a stream whose publisher sent no media for this long")
	fs.DurationVar(&o.reconnect.Initial, "reconnect-initial", time.Second, "first delay before reconnecting a failed ingest (doubles each try)")
	fs.DurationVar(&o.reconnect.Max, "reconnect-max", 30*time.Second, "longest delay between reconnect attempts")
	fs.DurationVar(&o.reconnect.Window, "reconnect-window", 5*time.Minute, "give a failing ingest up after reconnecting this long")
	fs.StringVar(&o.rtmpsCA, "rtmps-ca", "", "PEM file of CA certificates trusted for rtmps:// ingests beside the system's (SSL_CERT_FILE replaces those); verification stays on")
	fs.BoolVar(&o.srtpFastPath, "srtp-fast-path", true, "decrypt publishers' SRTP straight off the ICE socket once their DTLS handshake is done, instead of through pion's five-goroutine receive chain (false: every packet takes pion's path)")
	fs.BoolVar(&o.denyPrivate, "deny-private-outputs", false, "refuse outputs and icecast_urls on loopback and private addresses (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7); link-local, cloud metadata, multicast and the gateway's own HTTP port are refused always")
	fs.StringVar(&o.allowOutputs, "allow-outputs", "", "comma list of host names and CIDRs whose loopback and private addresses outputs may use even with --deny-private-outputs, e.g. nginx.internal,10.1.0.0/16")
	fs.IntVar(&o.maxHTTPConns, "max-http-conns", httpapi.DefaultMaxConns, "cap on open HTTP connections (API, WHIP, event streams); past it new ones are closed")
	fs.IntVar(&o.maxStreams, "max-streams", 0, "cap on concurrent publisher sessions; past it new ones get 503 LIMIT_EXCEEDED (0: no cap)")
	fs.IntVar(&o.maxTargets, "max-targets", gateway.DefaultMaxTargets, "cap on the targets of one broadcast; past it 429 LIMIT_EXCEEDED")
	fs.IntVar(&o.maxSSE, "max-sse-subscribers", gateway.DefaultMaxEventSubscribers, "cap on the event streams (SSE) open on one stream; past it 429 LIMIT_EXCEEDED")
	fs.StringVar(&o.tokenSecret, "token-secret", "", "verify scoped publish tokens (JWT, HS256) with this HMAC secret of at least 32 bytes; off when empty")
	fs.StringVar(&o.tokenKey, "token-key", "", "verify scoped publish tokens (JWT) with the PEM public key in this file instead (ES256 for P-256, EdDSA for Ed25519, RS256 for RSA)")
	fs.StringVar(&o.tokenAudience, "token-audience", "", "when set, publish tokens must carry this aud")
	fs.StringVar(&o.tokenIssuer, "token-issuer", "", "when set, publish tokens must carry this iss")
	fs.StringVar(&o.authWebhook, "auth-webhook", "", "http(s) URL POSTed a JSON description of every publish and broadcast start; anything but a 2xx within --auth-webhook-timeout refuses it (403 FORBIDDEN)")
	fs.DurationVar(&o.authWebhookTO, "auth-webhook-timeout", auth.DefaultWebhookTimeout, "how long the authorization webhook has to answer before the request is refused")
	fs.StringVar(&o.corsOrigins, "cors-origins", "", "comma list of other origins (scheme://host[:port]) whose web pages may call the API and WHIP, or * for any; empty: none (the built-in page at / is same-origin)")
	fs.Var(&o.webhooks, "webhook", "send every stream's events as signed JSON POSTs to this http(s) URL (repeat it, or a comma list, for more; see README, Webhooks)")
	fs.StringVar(&o.webhookSecret, "webhook-secret", "", "key of the webhooks' HMAC-SHA256 signature (X-Castbridge-Signature header); required with --webhook")
	fs.StringVar(&o.webhookEvents, "webhook-events", "", "comma list of the event names webhooks send (default: all stream, broadcast and target events; ReceivedWebRTCStats is never sent)")
	fs.StringVar(&o.redisURL, "redis", "", "join a cluster of castbridge nodes through this Redis, redis://[user:password@]host:port[/db] or rediss://: any node answers for any stream, publishers a full or draining node cannot take are redirected (see docs/cluster.md); off when empty")
	fs.StringVar(&o.nodeID, "node-id", "", "this node's id in the cluster (default: the host name)")
	fs.StringVar(&o.advertiseURL, "advertise-url", "", "this node's API base URL as the other nodes and clients reach it, e.g. http://10.0.0.5:8080 (required with --redis)")
	fs.StringVar(&o.clusterSecret, "cluster-secret", "", "shared secret of at least 16 bytes signing node-to-node requests (required with --redis; the same on every node)")
	fs.DurationVar(&o.clusterTTL, "cluster-ttl", cluster.DefaultTTL, "how long a node's registry entries live without its heartbeat (every TTL/3): a node that dies leaves the cluster, its streams with it, within this")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 0, "on SIGTERM, first drain: take no new publishers (/readyz 503, the cluster places them elsewhere) and let live streams go on for up to this long, then stop their broadcasts cleanly (0: stop at once)")
	fs.StringVar(&o.pprofAddr, "pprof-addr", "", "serve Go's net/http/pprof profiles (/debug/pprof/, without the command line) on this separate loopback address, e.g. 127.0.0.1:6060; off when empty")
	fs.DurationVar(&o.iceReadCoalesce, "ice-read-coalesce", defaultReadCoalesce, "how long the ICE UDP port's reader lets datagrams gather after a partial batch before it reads again (Linux): fewer system calls and wake-ups under load for at most this much added delay; 0 reads again at once; up to 5ms")
	fs.Func("gomaxprocs", "Go's scheduler size, as GOMAXPROCS: auto gives it one P while the gateway uses under 0.4 of a core and the runtime's default (every CPU it may use) past 0.6, which cost a fifth less CPU per stream at 100 video streams on 2 CPUs; 0 the runtime's default always; N that many (GOMAXPROCS in the environment wins when this flag is not given) (default auto)", func(v string) error {
		if v == "auto" {
			o.procs = -1
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("%q is not auto or a count of procs", v)
		}
		o.procs = n
		return nil
	})
	fs.IntVar(&o.gcPercent, "gc-percent", defaultGCPercent, "Go's garbage collection target, as GOGC: the heap may grow this many percent past what is live before a collection; the gateway allocates little per packet, so 50 (not Go's 100) costs no measurable CPU and keeps a fifth less memory per stream (GOGC in the environment wins when this flag is not given); 10 to 1000")
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: castbridge [flags]\n\nEvery flag can also be set as CASTBRIDGE_<FLAG> (e.g. CASTBRIDGE_HTTP_ADDR).")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := "CASTBRIDGE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" && !given[f.Name] && err == nil {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s: %w", env, serr)
			}
		}
	})
	if err != nil {
		return o, err
	}
	if o.gcPercent < 10 || o.gcPercent > 1000 {
		return o, fmt.Errorf("--gc-percent: %d is outside 10 to 1000", o.gcPercent)
	}
	if o.iceReadCoalesce < 0 || o.iceReadCoalesce > maxReadCoalesce {
		return o, fmt.Errorf("--ice-read-coalesce: %v is outside 0 to %v", o.iceReadCoalesce, maxReadCoalesce)
	}
	o.gcFromGOGC = !given["gc-percent"] && getenv("CASTBRIDGE_GC_PERCENT") == "" && getenv("GOGC") != ""
	o.procsFromEnv = !given["gomaxprocs"] && getenv("CASTBRIDGE_GOMAXPROCS") == "" && getenv("GOMAXPROCS") != ""
	return o, nil
}

// defaultReadCoalesce is --ice-read-coalesce's default: at 100 video
// streams it took recvmmsg from ~4.6 to ~19 datagrams a call, and the CPU
// per stream 7% (video, 100 streams) to 13% (video + Opus, 50) lower, for
// ~0.5 ms more at the median (docs/perf.md).
// maxReadCoalesce bounds it well below what a frame's latency can spare.
const (
	defaultReadCoalesce = 500 * time.Microsecond
	maxReadCoalesce     = 5 * time.Millisecond
)

// sizeScheduler applies --gomaxprocs until the returned function is
// called: it then stops the sizer, if one runs, and gives the runtime its
// default back.
func sizeScheduler(ctx context.Context, o options, log *slog.Logger) (stop func()) {
	switch {
	case o.procsFromEnv || o.procs == 0:
		return func() {}
	case o.procs > 0:
		runtime.GOMAXPROCS(o.procs)
		return runtime.SetDefaultGOMAXPROCS
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		procs.Run(ctx, procs.Config{Logger: log})
	}()
	return func() {
		cancel()
		<-done
	}
}

// defaultGCPercent is --gc-percent's default. At 100 video streams
// (scripts/bench.sh, docs/perf.md) Go's default of 100 kept 1.06 MB of RSS
// a stream, 50 kept 0.85 MB, and CPU per stream did not move.
const defaultGCPercent = 50

// parseSTUN checks --stun: host:port, or a stun: URI as browsers'
// iceServers write it. TURN is the publisher's (its SDK's iceServers).
func parseSTUN(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	hp := strings.TrimPrefix(s, "stun:")
	if strings.HasPrefix(hp, "turn:") || strings.HasPrefix(hp, "turns:") || strings.HasPrefix(hp, "stuns:") {
		return "", fmt.Errorf("--stun %q: want a STUN server's host:port over UDP; TURN is for publishers (their iceServers)", s)
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return "", fmt.Errorf("--stun %q: want host:port, e.g. stun.l.google.com:19302: %w", s, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
		return "", fmt.Errorf("--stun %q: want host:port with a port from 1 to 65535, e.g. stun.l.google.com:19302", s)
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return "", fmt.Errorf("--stun %q: STUN is asked over IPv4 (the public address behind a NAT is an IPv4 one): give an IPv4 address or a name with one", s)
	}
	return hp, nil
}

// splitList splits a comma list, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// loopbackAddr reports whether a listen address binds only loopback.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func parseIPs(s string) ([]net.IP, error) {
	var ips []net.IP
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		ip := net.ParseIP(part)
		if ip == nil || ip.IsUnspecified() {
			return nil, fmt.Errorf("--ice-ips: %q is not an IP address", part)
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		ips = append(ips, ip)
	}
	return ips, nil
}

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// run serves until ctx ends, then shuts down cleanly: new publishers are
// refused, every broadcast is stopped (FCUnpublish/deleteStream), then exit.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	o, err := parseOptions(args, getenv, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(o.logLevel, stderr)
	if err != nil {
		return err
	}
	if !o.gcFromGOGC {
		debug.SetGCPercent(o.gcPercent)
	}
	defer sizeScheduler(ctx, o, log)()
	ips, err := parseIPs(o.iceIPs)
	if err != nil {
		return err
	}
	stunServer, err := parseSTUN(o.stun)
	if err != nil {
		return err
	}
	if o.iceTCPPort < 0 || o.iceTCPPort > 65535 {
		return fmt.Errorf("--ice-tcp-port: %d is not a port (0 turns ICE-TCP off)", o.iceTCPPort)
	}
	var rootCAs *x509.CertPool
	if o.rtmpsCA != "" {
		if rootCAs, err = rtmpout.LoadRootCAs(o.rtmpsCA); err != nil {
			return fmt.Errorf("--rtmps-ca: %w", err)
		}
	}
	var relays []gateway.Relay
	if o.config != "" {
		if relays, err = loadRelays(o.config); err != nil {
			return err
		}
	}

	// With relays, a publish must carry a relay's key (or
	// --local-ingest-key to be recorded): the ingest may face the world.
	if o.localIngest != "" && o.localIngestKey == "" && len(relays) == 0 && !loopbackAddr(o.localIngest) {
		return fmt.Errorf("--local-ingest %s is reachable from other hosts: set --local-ingest-key, or relays (--config), or listen on 127.0.0.1", o.localIngest)
	}
	if (o.rtmpsCert == "") != (o.rtmpsKey == "") {
		return errors.New("--rtmps-cert and --rtmps-key go together")
	}
	var rtmpsTLS *tls.Config
	if o.rtmpsCert != "" {
		if o.localIngest == "" {
			return errors.New("--rtmps-cert: the built-in ingest is off (--local-ingest is empty)")
		}
		cert, err := tls.LoadX509KeyPair(o.rtmpsCert, o.rtmpsKey)
		if err != nil {
			return fmt.Errorf("--rtmps-cert/--rtmps-key: %w", err)
		}
		rtmpsTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if o.localIngestKey == "" && len(relays) == 0 && !loopbackAddr(o.rtmpsIngest) {
			return fmt.Errorf("--rtmps-ingest %s is reachable from other hosts: set --local-ingest-key, or relays (--config), or listen on 127.0.0.1", o.rtmpsIngest)
		}
	}
	if o.rtmpResume < 0 {
		return fmt.Errorf("--rtmp-resume: %v, want 0 or more", o.rtmpResume)
	}
	resume := o.rtmpResume
	if resume == 0 {
		resume = -1 // the gateway's "none"
	}
	if o.localIngestConns < 1 {
		return fmt.Errorf("--local-ingest-max-conns: %d, want at least 1", o.localIngestConns)
	}
	if o.maxStreams < 0 || o.maxTargets < 1 || o.maxSSE < 1 {
		return fmt.Errorf("--max-streams %d, --max-targets %d, --max-sse-subscribers %d: want 0 or more streams, at least 1 target and 1 subscriber", o.maxStreams, o.maxTargets, o.maxSSE)
	}
	if o.recordingsMax < 0 {
		return fmt.Errorf("--recordings-max-bytes: %d, want 0 (no cap) or more", o.recordingsMax)
	}
	videoCodecs, err := gateway.ParseVideoCodecs(o.videoCodecs)
	if err != nil {
		return fmt.Errorf("--video-codecs: %w", err)
	}
	access, err := accessConfig(o)
	if err != nil {
		return err
	}

	hooks, err := newWebhooks(o, log)
	if err != nil {
		return err
	}
	// closeHooks flushes the webhooks' queues until ctx ends; what is left
	// then is dropped with a warning, not an exit status.
	var node *cluster.Node
	closeHooks := func(ctx context.Context) {
		if node != nil && ctx.Err() != nil {
			_ = node.Close(ctx) // a failed start: the client's connections only
		}
		if hooks == nil {
			return
		}
		if err := hooks.Close(ctx); err != nil {
			log.Warn("webhooks closed", "err", err)
		}
	}
	// On the way out of a failed start nothing is waited for.
	expired, expire := context.WithCancel(context.Background())
	expire()
	var sink events.Sink
	if hooks != nil {
		sink = hooks
	}

	// The manager is made below; the node's heartbeat asks it for its load
	// only once Start runs, after that.
	var m *gateway.Manager
	node, err = newClusterNode(o, func() *gateway.Manager { return m }, log)
	if err != nil {
		closeHooks(expired)
		return err
	}
	var streamsChanged func()
	if node != nil {
		streamsChanged = node.Changed
	}

	// The ingests route relay keys to the manager, made after them; they
	// serve once it exists. Outputs may still dial them (recording a
	// broadcast on the built-in ingest); a relay pointing at its own key
	// is refused as already being published.
	var ing, ings *ingest.Server
	route := &rtmpRoute{}
	ingestDone := make(chan error, 2)
	if o.localIngest != "" {
		if err := os.MkdirAll(o.recordingsDir, 0o755); err != nil {
			closeHooks(expired)
			return fmt.Errorf("recordings dir: %w", err)
		}
		icfg := ingest.Config{Addr: o.localIngest, Dir: o.recordingsDir, Logger: log.With("component", "ingest"),
			Key: o.localIngestKey, MaxConns: o.localIngestConns, RecordingsMaxBytes: o.recordingsMax,
			Route: route.publish}
		ing, err = ingest.Listen(icfg)
		if err != nil {
			closeHooks(expired)
			return fmt.Errorf("local ingest: %w", err)
		}
		if rtmpsTLS != nil {
			icfg.Addr, icfg.TLS, icfg.Logger = o.rtmpsIngest, rtmpsTLS, log.With("component", "ingest", "tls", true)
			if ings, err = ingest.Listen(icfg); err != nil {
				_ = ing.Close()
				closeHooks(expired)
				return fmt.Errorf("rtmps ingest: %w", err)
			}
		}
		url := "rtmp://" + ing.Addr().String() + "/live/<name>"
		if o.localIngestKey != "" {
			url += "?key=<key>"
		}
		log.Info("local RTMP ingest", "url", url, "recordings", o.recordingsDir, "recordings_max_bytes", o.recordingsMax, "relays", len(relays))
		if ings != nil {
			log.Info("local RTMPS ingest", "url", "rtmps://"+ings.Addr().String()+"/live/<name>")
		}
	}
	closeIngests := func() {
		if ing != nil {
			_ = ing.Close()
		}
		if ings != nil {
			_ = ings.Close()
		}
	}

	m, err = gateway.NewManager(gateway.Config{
		ICEUDPPort:          o.iceUDPPort,
		ICETCPPort:          o.iceTCPPort,
		ICEIPs:              ips,
		STUNServer:          stunServer,
		KeyframeInterval:    o.keyframeInterval,
		VideoGap:            videoGapConfig(o.videoGap),
		VideoCodecs:         videoCodecs,
		MediaTimeout:        o.mediaTimeout,
		Reconnect:           o.reconnect,
		RTMPSRootCAs:        rootCAs,
		Relays:              relays,
		DenyPrivateOutputs:  o.denyPrivate,
		NoSRTPFastPath:      !o.srtpFastPath,
		ICEReadCoalesce:     o.iceReadCoalesce,
		AllowOutputs:        splitList(o.allowOutputs),
		MaxStreams:          o.maxStreams,
		RTMPResume:          resume,
		RTMPRecordOthers:    o.localIngestKey != "" || len(relays) == 0,
		MaxTargets:          o.maxTargets,
		MaxEventSubscribers: o.maxSSE,
		EventSink:           sink,
		NodeID:              nodeIDOf(node),
		StreamsChanged:      streamsChanged,
		Logger:              log,
	})
	if err != nil {
		closeIngests()
		closeHooks(expired)
		return err
	}
	route.m = m
	for _, srv := range []*ingest.Server{ing, ings} {
		if srv == nil {
			ingestDone <- nil
			continue
		}
		go func() { ingestDone <- srv.Serve(ctx) }()
	}
	access.Manager, access.Logger, access.Cluster = m, log.With("component", "http"), node
	api := httpapi.New(access)
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		_ = m.Shutdown(context.Background())
		closeHooks(expired)
		closeIngests()
		return fmt.Errorf("http listen %s: %w", o.httpAddr, err)
	}
	// Outputs never dial the API itself.
	m.AddOwnPort(ln.Addr().(*net.TCPAddr).Port)
	limits := httpapi.Limits{MaxConns: o.maxHTTPConns}
	srv := httpapi.NewServer(api, limits)
	srv.RegisterOnShutdown(api.EndForwarded)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(httpapi.LimitListener(ln, limits)) }()
	if node != nil {
		node.SetICE(iceAddrs(ips, m.ICEPort(), m.ICETCPPort()))
		// Not ctx: SIGTERM ends ctx, and a draining node stays registered
		// (as draining) until its streams have ended; Close ends it.
		node.Start(context.Background())
		st := node.Status()
		log.Info("cluster node", "node", node.ID(), "advertise_url", node.APIURL(), "redis", redisHost(o.redisURL), "redis_up", st.RedisUp, "ttl", node.TTL())
	}
	if o.pprofAddr != "" {
		psrv, paddr, err := servePprof(o.pprofAddr)
		if err != nil {
			_ = srv.Close()
			_ = m.Shutdown(context.Background())
			closeHooks(expired)
			closeIngests()
			return err
		}
		defer psrv.Close()
		if ta, ok := paddr.(*net.TCPAddr); ok {
			m.AddOwnPort(ta.Port)
		}
		log.Info("pprof listening", "url", "http://"+paddr.String()+"/debug/pprof/")
	}
	log.Info("castbridge listening", "http", ln.Addr().String(), "ice_udp_port", m.ICEPort(), "ice_tcp_port", m.ICETCPPort(), "api_key", o.apiKey != "", "relays", len(relays),
		"publish_tokens", access.Tokens != nil, "auth_webhook", access.AuthWebhook != nil, "cors_origins", strings.Join(access.CORSOrigins, ","))
	if o.apiKey == "" && access.Tokens == nil && !loopbackAddr(ln.Addr().String()) {
		log.Warn("NO AUTHENTICATION: the API and WHIP on " + ln.Addr().String() + " let anyone who reaches the port list, start, drive and end every stream; set --api-key (CASTBRIDGE_API_KEY) and/or --token-secret (CASTBRIDGE_TOKEN_SECRET), or listen on 127.0.0.1")
	}

	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	if err == nil && o.drainTimeout > 0 {
		drain(m, o.drainTimeout, log)
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	errs := []error{err, m.Shutdown(sctx)}
	if node != nil {
		// The cluster forgets the node now, not after the TTL.
		if cerr := node.Close(sctx); cerr != nil {
			log.Warn("cluster: leaving", "err", cerr)
		}
	}
	errs = append(errs, srv.Shutdown(sctx))
	api.Close()
	if access.AuthWebhook != nil {
		access.AuthWebhook.Close()
	}
	// The streams' last events (StopBroadcastSuccess, StreamClosed) are
	// queued now: the webhooks get what is left of the deadline.
	closeHooks(sctx)
	for _, srv := range []*ingest.Server{ing, ings} {
		if srv != nil {
			errs = append(errs, srv.Close())
		}
	}
	for range 2 {
		if ierr := <-ingestDone; ierr != nil && !errors.Is(ierr, context.Canceled) {
			errs = append(errs, ierr)
		}
	}
	if err := errors.Join(errs...); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// rtmpRoute routes the built-in ingests' publishes to the manager, set
// before the ingests serve.
type rtmpRoute struct{ m *gateway.Manager }

func (r *rtmpRoute) publish(info ingest.PublishInfo) (ingest.Sink, error) {
	return r.m.RouteRTMP(info)
}

// accessConfig makes the API's access control from the flags: the API key,
// the publish-token verifier, the authorization webhook, CORS origins.
func accessConfig(o options) (httpapi.Config, error) {
	cfg := httpapi.Config{APIKey: o.apiKey}
	switch {
	case o.tokenSecret != "" && o.tokenKey != "":
		return cfg, errors.New("--token-secret and --token-key: give one (an HMAC secret or a public key file)")
	case o.tokenSecret != "":
		v, err := auth.NewVerifier(auth.VerifierConfig{Key: []byte(o.tokenSecret), Audience: o.tokenAudience, Issuer: o.tokenIssuer})
		if err != nil {
			return cfg, fmt.Errorf("--token-secret: %w", err)
		}
		cfg.Tokens = v
	case o.tokenKey != "":
		pemKey, err := os.ReadFile(o.tokenKey)
		if err != nil {
			return cfg, fmt.Errorf("--token-key takes a PEM public key file (an HMAC secret goes in --token-secret): %w", err)
		}
		v, err := auth.NewVerifier(auth.VerifierConfig{Key: pemKey, PEMKey: true, Audience: o.tokenAudience, Issuer: o.tokenIssuer})
		if err != nil {
			return cfg, fmt.Errorf("--token-key: %w", err)
		}
		cfg.Tokens = v
	case o.tokenAudience != "" || o.tokenIssuer != "":
		return cfg, errors.New("--token-audience and --token-issuer need --token-secret or --token-key")
	}
	if o.authWebhook != "" {
		u, err := url.Parse(o.authWebhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return cfg, errors.New("--auth-webhook: want an http:// or https:// URL")
		}
		if o.authWebhookTO <= 0 {
			return cfg, fmt.Errorf("--auth-webhook-timeout: %v, want more than 0", o.authWebhookTO)
		}
		cfg.AuthWebhook = auth.NewWebhook(o.authWebhook, o.authWebhookTO)
	}
	origins, err := httpapi.ParseOrigins(splitList(o.corsOrigins))
	if err != nil {
		return cfg, fmt.Errorf("--cors-origins: %w", err)
	}
	cfg.CORSOrigins = origins
	return cfg, nil
}

// newWebhooks makes the event webhooks' sender from the options; nil when
// no --webhook is set.
func newWebhooks(o options, log *slog.Logger) (*webhook.Sender, error) {
	if len(o.webhooks) == 0 {
		if o.webhookEvents != "" {
			return nil, errors.New("--webhook-events without --webhook")
		}
		return nil, nil
	}
	if o.webhookSecret == "" {
		return nil, errors.New("--webhook needs --webhook-secret (CASTBRIDGE_WEBHOOK_SECRET): receivers check the signature to know the events are castbridge's")
	}
	names := splitList(o.webhookEvents)
	known := gateway.EventNames()
	for _, n := range names {
		if n == (gateway.ReceivedWebRTCStats{}).EventName() {
			return nil, fmt.Errorf("--webhook-events: %s is made per SSE client (?stats=), webhooks never send it", n)
		}
		if !slices.Contains(known, n) {
			return nil, fmt.Errorf("--webhook-events: no event %q; the events are %s", n, strings.Join(known, ", "))
		}
	}
	shown := make([]string, len(o.webhooks))
	for i, u := range o.webhooks {
		s, err := webhook.CheckURL(u)
		if err != nil {
			return nil, fmt.Errorf("--webhook %d: %w", i+1, err)
		}
		shown[i] = s
	}
	hooks, err := webhook.New(webhook.Config{URLs: o.webhooks, Secret: o.webhookSecret, Events: names,
		Logger: log.With("component", "webhook")})
	if err != nil {
		return nil, fmt.Errorf("--webhook: %w", err)
	}
	which := "all"
	if len(names) > 0 {
		which = strings.Join(names, ",")
	}
	log.Info("event webhooks", "urls", strings.Join(shown, " "), "events", which)
	return hooks, nil
}

// servePprof serves net/http/pprof on its own listener and mux, never on the
// API's.
func servePprof(addr string) (*http.Server, net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--pprof-addr %s: %w", addr, err)
	}
	// Profiles show the process's memory and code: loopback only. The
	// command line (with --api-key) is not served at all.
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		_ = ln.Close()
		return nil, nil, fmt.Errorf("--pprof-addr %s: must be a loopback address (127.0.0.1 or [::1]), it has no authentication", addr)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, ln.Addr(), nil
}

// drain is a rollout's first step (SIGTERM with --drain-timeout): no new
// publishers (Ready turns false, /readyz 503; in a cluster the node leaves
// placement at once and redirects them), the live streams and their
// broadcasts go on until they end or the deadline passes; then run stops
// what is left cleanly.
func drain(m *gateway.Manager, timeout time.Duration, log *slog.Logger) {
	start := time.Now()
	m.Drain()
	log.Info("draining: no new publishers", "streams", m.Len(), "drain_timeout", timeout)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for m.Len() > 0 {
		select {
		case <-deadline.C:
			log.Info("drain deadline passed: stopping the streams left", "streams", m.Len(), "took", time.Since(start))
			return
		case <-tick.C:
		}
	}
	log.Info("drained: every stream ended", "took", time.Since(start))
}

// newClusterNode makes the node's cluster membership from --redis and its
// companions; nil without --redis. manager returns the gateway once it is
// made (the heartbeat asks it for the load).
func newClusterNode(o options, manager func() *gateway.Manager, log *slog.Logger) (*cluster.Node, error) {
	if o.redisURL == "" {
		if o.advertiseURL != "" || o.clusterSecret != "" {
			return nil, errors.New("--advertise-url and --cluster-secret need --redis")
		}
		return nil, nil
	}
	if o.clusterSecret == "" {
		return nil, errors.New("--redis needs --cluster-secret (CASTBRIDGE_CLUSTER_SECRET), the same on every node: nodes sign the requests they forward to each other with it")
	}
	u, err := url.Parse(o.advertiseURL)
	if o.advertiseURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, errors.New("--redis needs --advertise-url, this node's API base URL as other nodes and clients reach it: http(s)://host:port, no path")
	}
	id := o.nodeID
	if id == "" {
		if id, err = os.Hostname(); err != nil || id == "" {
			return nil, errors.New("--node-id: the host name is unknown, give an id")
		}
	}
	if len(id) > 64 || strings.ContainsAny(id, " \t\r\n:") {
		return nil, fmt.Errorf("--node-id %q: at most 64 characters, no spaces or colons", id)
	}
	if o.clusterTTL < 300*time.Millisecond {
		return nil, fmt.Errorf("--cluster-ttl %v: want at least 300ms", o.clusterTTL)
	}
	return cluster.New(cluster.Config{
		RedisURL: o.redisURL,
		NodeID:   id,
		APIURL:   strings.TrimSuffix(o.advertiseURL, "/"),
		Secret:   o.clusterSecret,
		TTL:      o.clusterTTL,
		Logger:   log.With("component", "cluster"),
		Load: func() cluster.Load {
			m := manager()
			mt := m.Metrics()
			targets := 0
			for _, n := range mt.TargetsByState {
				targets += n
			}
			return cluster.Load{Streams: mt.Streams, Targets: targets, MaxStreams: m.MaxStreams(), Draining: !m.Ready()}
		},
		Streams: func() []string {
			var ids []string
			for _, s := range manager().Streams() {
				ids = append(ids, s.ID())
			}
			return ids
		},
	})
}

func nodeIDOf(n *cluster.Node) string {
	if n == nil {
		return ""
	}
	return n.ID()
}

// redisHost is the Redis URL as it may be logged: host and port, never the
// password.
func redisHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable>"
	}
	return u.Host
}

// iceAddrs are the node's ICE addresses as its registry entry shows them:
// "udp ip:port" (and "tcp ip:port" with ICE-TCP) for each --ice-ips
// address, the port alone ("udp :8189") when the host's addresses are
// advertised.
func iceAddrs(ips []net.IP, udpPort, tcpPort int) []string {
	hosts := make([]string, 0, len(ips))
	for _, ip := range ips {
		hosts = append(hosts, ip.String())
	}
	if len(hosts) == 0 {
		hosts = []string{""}
	}
	var out []string
	for _, h := range hosts {
		out = append(out, "udp "+net.JoinHostPort(h, strconv.Itoa(udpPort)))
		if tcpPort > 0 {
			out = append(out, "tcp "+net.JoinHostPort(h, strconv.Itoa(tcpPort)))
		}
	}
	return out
}

// videoGapConfig maps --video-gap to gateway.Config.VideoGap, where 0 is
// the default: the flag's 0 (or a negative) turns the stall filler off.
func videoGapConfig(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
