package gateway

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/events"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/gateway/outpolicy"
	"github.com/castbridge/castbridge/gateway/rtmpout"
	"github.com/castbridge/castbridge/gateway/webrtcin"
	"github.com/castbridge/castbridge/transmux/rtp/aubuf"
)

// Config is the gateway's runtime configuration.
type Config struct {
	// VideoCodecs are the video codecs a preview-first stream's answer
	// takes, in order of preference (webrtcin.Video* names; empty is
	// H.264 alone). ParseVideoCodecs reads --video-codecs. See codecs.go.
	VideoCodecs []string
	// ICEUDPPort is the one UDP port every session's ICE runs on (IPv4,
	// and IPv6 on the same number when the host or ICEIPs has it).
	ICEUDPPort int
	// ICETCPPort is the one TCP port of passive ICE-TCP, for publishers
	// whose networks block UDP: 0 is off, a negative port any free one.
	ICETCPPort int
	// ICEIPs are advertised as host candidates (UDP and TCP); empty means
	// the host's interface addresses.
	ICEIPs []net.IP
	// STUNServer (host:port), when set and ICEIPs is empty, is asked for
	// the gateway's public address, which answers then carry as a srflx
	// candidate on the ICE UDP port; it is asked again every 25 s.
	// STUNTimeout bounds one query (0: 3 s).
	STUNServer  string
	STUNTimeout time.Duration
	// KeyframeInterval is the longest a target waits for a keyframe before
	// the gateway asks the publisher for one (PLI).
	KeyframeInterval time.Duration
	// VideoGap is how long a publisher's video may stall while its audio
	// flows before the broadcast gets filler frames (black for H.264, the
	// last picture for the others) until its next keyframe: 0
	// means 1 s, negative fills only while the video is muted.
	VideoGap time.Duration
	// PublishTimeout bounds a target's connect + publish handshake.
	PublishTimeout time.Duration
	// MediaTimeout ends a stream whose publisher sent nothing for this long.
	// ICE disconnected does not end a stream (ICE failed does): a publisher
	// whose network blinked has until then to come back.
	MediaTimeout time.Duration
	// ICEDisconnectedTimeout is how long ICE hears nothing before it says
	// disconnected (a stream shows connecting, or live with a broadcast);
	// 0 means pion's 5 s.
	ICEDisconnectedTimeout time.Duration
	// NoSRTPFastPath keeps every RTP packet on pion's receive path
	// (webrtcin.ListenConfig.NoFastPath).
	NoSRTPFastPath bool
	// ICEReadCoalesce is webrtcin.ListenConfig.ReadCoalesce.
	ICEReadCoalesce time.Duration
	// CloseTimeout is how long stopping a broadcast or closing a stream
	// waits for its ingests to be told goodbye before cutting them off.
	CloseTimeout time.Duration
	// Reconnect governs how targets come back after their ingest failed.
	Reconnect rtmpout.ReconnectPolicy
	// RTMPSRootCAs verify rtmps:// ingests; nil means the system's roots.
	// rtmpout.LoadRootCAs makes it from a PEM file.
	RTMPSRootCAs *x509.CertPool
	// Relays map WHIP stream keys to the targets their streams go to.
	Relays []Relay
	// MaxStreams limits concurrent sessions (0 = no limit), RTMP
	// publishers (RouteRTMP) included.
	MaxStreams int
	// RTMPResume is how long the stream of an RTMP publisher that
	// disconnected waits for it to come back with the same key, its
	// broadcast going on (0: DefaultRTMPResume; negative: not at all).
	RTMPResume time.Duration
	// RTMPRecordOthers leaves a publish to the built-in ingest whose name
	// is no relay's key to the ingest's own rules (its publish key and
	// recording); else RouteRTMP refuses it.
	RTMPRecordOthers bool
	// DenyPrivateOutputs refuses outputs and icecast_urls on loopback and
	// private addresses (see package outpolicy for what is always refused).
	DenyPrivateOutputs bool
	// AllowOutputs are host names and CIDRs opened even with
	// DenyPrivateOutputs.
	AllowOutputs []string
	// OwnPorts are the gateway's own TCP listening ports (the HTTP API,
	// the built-in ingest), never dialed on the host's addresses. The
	// ICE-TCP port is added by NewManager; Manager.AddOwnPort adds ports
	// known later.
	OwnPorts []int
	// MaxTargets limits the targets of one broadcast (0: DefaultMaxTargets).
	MaxTargets int
	// MaxEventSubscribers limits the event subscriptions (SSE clients) of
	// one stream (0: DefaultMaxEventSubscribers).
	MaxEventSubscribers int
	// EventSink, when set, gets every stream's events as well (the event
	// webhooks, package webhook): the manager taps each stream's bus.
	EventSink events.Sink
	// NodeID, in a cluster, names this node in the stream views ("node").
	NodeID string
	// StreamsChanged, when set, is called (never under the manager's
	// lock) after a stream was added or has closed: the cluster registry
	// updates its keys. It must not block.
	StreamsChanged func()
	Logger         *slog.Logger

	policy        *outpolicy.Policy // made by NewManager from the fields above
	icecastClient *http.Client      // dials through policy
	hist          *histograms       // made by NewManager; Manager.Collectors
}

// Defaults of Config's per-stream limits.
const (
	DefaultMaxTargets          = 10
	DefaultMaxEventSubscribers = 16
)

func (c *Config) setDefaults() {
	if c.MaxTargets <= 0 {
		c.MaxTargets = DefaultMaxTargets
	}
	if c.MaxEventSubscribers <= 0 {
		c.MaxEventSubscribers = DefaultMaxEventSubscribers
	}
	if c.KeyframeInterval <= 0 {
		c.KeyframeInterval = 2 * time.Second
	}
	if c.VideoGap == 0 {
		c.VideoGap = time.Second
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 10 * time.Second
	}
	if c.MediaTimeout <= 0 {
		c.MediaTimeout = 10 * time.Second
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = 5 * time.Second
	}
	c.Reconnect.SetDefaults()
	if c.RTMPResume == 0 {
		c.RTMPResume = DefaultRTMPResume
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Manager owns every live Stream and the shared ICE socket.
type Manager struct {
	cfg       Config
	log       *slog.Logger
	transport *webrtcin.Transport
	frames    *media.FramePool
	auBufs    *aubuf.Pool // lent to every video track's depacketizer

	totals totals // counters of closed streams and retired targets, for metrics

	mu       sync.Mutex
	streams  map[string]*Stream
	rtmpIn   map[int]*Stream // by relay index: the RTMP stream of its key (RouteRTMP)
	starting int             // CreateStream calls past the MaxStreams check, not yet in streams
	draining bool            // no new publishers (Drain or Shutdown)
	shutDown bool            // Shutdown has run
	wg       sync.WaitGroup  // closeAsync goroutines: Shutdown joins them
}

// NewManager opens the ICE UDP port and returns a manager ready to accept
// publishers.
func NewManager(cfg Config) (*Manager, error) {
	cfg.setDefaults()
	if err := ValidateRelays(cfg.Relays); err != nil {
		return nil, fmt.Errorf("relays: %w", err)
	}
	policy, err := outpolicy.New(outpolicy.Config{DenyPrivate: cfg.DenyPrivateOutputs, Allow: cfg.AllowOutputs, OwnPorts: cfg.OwnPorts})
	if err != nil {
		return nil, fmt.Errorf("allowed outputs: %w", err)
	}
	cfg.policy, cfg.icecastClient = policy, policy.HTTPClient()
	cfg.hist = newHistograms()
	tr, err := webrtcin.Listen(webrtcin.ListenConfig{
		UDPPort: cfg.ICEUDPPort,
		TCPPort: cfg.ICETCPPort,
		IPs:     cfg.ICEIPs,
		Logger:  cfg.Logger.With("component", "ice"),

		STUNServer:  cfg.STUNServer,
		STUNTimeout: cfg.STUNTimeout,

		ICEDisconnectedTimeout: cfg.ICEDisconnectedTimeout,
		NoFastPath:             cfg.NoSRTPFastPath,
		ReadCoalesce:           cfg.ICEReadCoalesce,
	})
	if err != nil {
		return nil, err
	}
	policy.AddOwnPort(tr.TCPPort())
	return &Manager{
		cfg:       cfg,
		log:       cfg.Logger,
		transport: tr,
		frames:    media.NewFramePool(),
		auBufs:    aubuf.NewPool(),
		streams:   map[string]*Stream{},
		rtmpIn:    map[int]*Stream{},
	}, nil
}

// AddOwnPort records one more of the gateway's TCP listening ports (the
// HTTP API's, once it listens), which outputs are never dialed on.
func (m *Manager) AddOwnPort(port int) { m.cfg.policy.AddOwnPort(port) }

// ICEPort is the UDP port ICE listens on (useful when configured as 0).
func (m *Manager) ICEPort() int { return m.transport.Port() }

// ICETCPPort is the ICE-TCP port, 0 when ICE-TCP is off.
func (m *Manager) ICETCPPort() int { return m.transport.TCPPort() }

// STUN is what the gateway learned from its STUN server (the zero
// STUNStatus without one).
func (m *Manager) STUN() webrtcin.STUNStatus { return m.transport.STUN() }

// Ready reports whether new publishers are accepted.
func (m *Manager) Ready() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.draining
}

// HasRoom reports whether a new publisher would be taken now: not
// draining, and under MaxStreams counting the streams being set up. The
// API asks before it reads an offer, to send the publisher to another
// node of the cluster instead.
func (m *Manager) HasRoom() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.draining && (m.cfg.MaxStreams == 0 || len(m.streams)+m.starting < m.cfg.MaxStreams)
}

// MaxStreams is the cap on concurrent sessions (0: none).
func (m *Manager) MaxStreams() int { return m.cfg.MaxStreams }

// Drain stops taking new publishers (Ready turns false) and leaves the
// live streams and their broadcasts running: a rollout's first step.
// Shutdown ends them later.
func (m *Manager) Drain() {
	m.mu.Lock()
	was := m.draining
	m.draining = true
	m.mu.Unlock()
	if !was {
		m.changed()
	}
}

// Len is the number of live streams.
func (m *Manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.streams)
}

func (m *Manager) changed() {
	if m.cfg.StreamsChanged != nil {
		m.cfg.StreamsChanged()
	}
}

// CreateStream starts a publisher session from its SDP offer and returns the
// stream with its answer ready (ICE gathering complete: non-trickle). With
// targets, the broadcast starts as soon as media flows, and the answer caps
// the video at their lowest videobitrate (b=AS).
func (m *Manager) CreateStream(ctx context.Context, offer, name string, targets []rtmpout.Spec) (*Stream, error) {
	return m.CreateScopedStream(ctx, offer, name, targets, nil)
}

// CreateScopedStream is CreateStream for a caller of scope sc (nil: the
// unrestricted one): the stream carries the scope's name, and targets are
// checked and dialed under the scope's output policy.
func (m *Manager) CreateScopedStream(ctx context.Context, offer, name string, targets []rtmpout.Spec, sc *Scope) (*Stream, error) {
	accScope := sc
	if sc != nil && sc.OperatorTargets {
		accScope = nil
	}
	acc, err := m.accessFor(accScope)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.draining {
		m.mu.Unlock()
		return nil, errDraining()
	}
	// Streams still being set up hold their place: checking the map alone
	// let a burst of concurrent offers all pass before any was added
	// (26 of 200 at --max-streams 20).
	if m.cfg.MaxStreams > 0 && len(m.streams)+m.starting >= m.cfg.MaxStreams {
		m.mu.Unlock()
		m.refused(apierr.LimitStreams)
		return nil, &apierr.Error{Code: apierr.CodeLimitExceeded, Limit: apierr.LimitStreams,
			Message: fmt.Sprintf("the gateway already runs %d streams, its limit (--max-streams)", m.cfg.MaxStreams)}
	}
	m.starting++
	m.mu.Unlock()
	started := false
	defer func() {
		if !started {
			m.mu.Lock()
			m.starting--
			m.mu.Unlock()
		}
	}()
	if targets != nil {
		if err := rtmpout.ValidateAllFor(targets, acc.policy); err != nil {
			return nil, err
		}
		if err := m.checkTargets(len(targets)); err != nil {
			return nil, err
		}
	}
	accept, ownCodec, err := m.videoCodecsFor(targets)
	if err != nil {
		return nil, err
	}
	om, err := webrtcin.InspectOfferFor(offer, accept)
	if err != nil {
		return nil, err
	}
	if ownCodec && !om.Video && om.VideoUnmatched {
		// The targets want video in a codec the publisher does not
		// offer: an audio-only broadcast is not what they asked for.
		return nil, apierr.Errorf(apierr.CodeUnsupportedCodec,
			"the targets take video in %s, which the offer's video does not have (%s); offer one of them (RTCRtpTransceiver.setCodecPreferences) or set the targets' videocodec",
			strings.Join(accept, ", "), om.VideoRejection)
	}

	s, err := newStream(ctx, m, newID("st_"), name, om)
	if err != nil {
		return nil, err
	}
	if sc != nil {
		s.scope = sc.Stream
	}
	m.mu.Lock()
	if m.draining {
		m.mu.Unlock()
		s.Close()
		return nil, errDraining()
	}
	m.streams[s.id] = s
	m.starting-- // the place is now the stream's
	started = true
	m.mu.Unlock()
	m.totals.streams.Add(1)
	m.changed()
	if targets != nil {
		if kbps := rtmpout.MinVideoBitrate(targets) / 1000; kbps > 0 {
			s.answer = withVideoBandwidth(s.answer, kbps)
		}
		s.startWhenReady(targets, acc)
	}
	return s, nil
}

func errDraining() *apierr.Error {
	return apierr.Errorf(apierr.CodeLimitExceeded, "the gateway is shutting down and takes no new publishers")
}

// withVideoBandwidth adds b=AS:<kbps> to the video section of an SDP: the
// publisher's encoder stays under it from the first frame.
func withVideoBandwidth(sdp string, kbps int) string {
	lines := strings.SplitAfter(sdp, "\n")
	var out strings.Builder
	inVideo := false
	for _, l := range lines {
		if strings.HasPrefix(l, "m=") {
			inVideo = strings.HasPrefix(l, "m=video")
		}
		if inVideo && strings.HasPrefix(l, "b=") {
			continue // ours replaces any other
		}
		out.WriteString(l)
		if inVideo && strings.HasPrefix(l, "c=") {
			fmt.Fprintf(&out, "b=AS:%d\r\n", kbps)
		}
	}
	return out.String()
}

// Stream returns the stream with that id.
func (m *Manager) Stream(id string) (*Stream, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.streams[id]
	if !ok {
		return nil, apierr.Errorf(apierr.CodeNotFound, "no stream %q: it never existed or has been closed", id)
	}
	return s, nil
}

// Streams lists live streams, oldest first.
func (m *Manager) Streams() []*Stream {
	m.mu.Lock()
	out := make([]*Stream, 0, len(m.streams))
	for _, s := range m.streams {
		out = append(out, s)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].createdAt.Before(out[j].createdAt) })
	return out
}

// closeAsync closes s on a goroutine the manager owns (Shutdown waits for it).
func (m *Manager) closeAsync(s *Stream) {
	m.wg.Go(s.Close)
}

// closed forgets a stream that finished closing and keeps its counters.
func (m *Manager) closed(s *Stream) {
	m.totals.addStream(s)
	m.mu.Lock()
	if m.streams[s.id] == s {
		delete(m.streams, s.id)
	}
	if s.rtmp != nil && m.rtmpIn[s.rtmp.relay] == s {
		delete(m.rtmpIn, s.rtmp.relay)
	}
	m.mu.Unlock()
	m.changed()
}

func (m *Manager) retireTarget(t *rtmpout.Target) { m.totals.addTarget(t) }

// CountRefusal counts a request the API refused at one of the apierr.Limit*
// limits (a publisher no node of the cluster could take).
func (m *Manager) CountRefusal(limit string) { m.refused(limit) }

// refused counts a request refused at one of the apierr.Limit* limits.
func (m *Manager) refused(limit string) { m.totals.refused(limit) }

// checkTargets refuses a broadcast of n targets past MaxTargets.
func (m *Manager) checkTargets(n int) error {
	if n <= m.cfg.MaxTargets {
		return nil
	}
	m.refused(apierr.LimitTargets)
	return targetsLimit(m.cfg.MaxTargets)
}

func targetsLimit(max int) *apierr.Error {
	return &apierr.Error{Code: apierr.CodeLimitExceeded, Limit: apierr.LimitTargets,
		Message: fmt.Sprintf("a broadcast has at most %d targets (--max-targets)", max)}
}

// Shutdown refuses new publishers, stops every broadcast, closes every
// stream and the ICE socket, and returns when all of their goroutines have
// ended. Until ctx ends the ingests are told goodbye; then they are cut off.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	if m.shutDown {
		m.mu.Unlock()
		return nil // already shut down
	}
	m.draining, m.shutDown = true, true
	m.mu.Unlock()
	m.changed()
	var wg sync.WaitGroup
	for _, s := range m.Streams() {
		wg.Go(func() { s.close(ctx) })
	}
	wg.Wait()
	m.wg.Wait()
	return m.transport.Close()
}

func newID(prefix string) string {
	return prefix + strings.ToLower(rand.Text()[:16])
}
