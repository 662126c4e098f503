package gateway

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v2"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v3"
)

// Config is the gateway's runtime configuration.
type Config struct {
	// ICEUDPPort is the one UDP port every session's ICE runs on.
	ICEUDPPort int
	// ICEIPs are advertised as host candidates; empty means the host's
	// interface addresses.
	ICEIPs []net.IP
	// KeyframeInterval is the longest a target waits for a keyframe before
	// the gateway asks the publisher for one (PLI).
	KeyframeInterval time.Duration
	// PublishTimeout bounds a target's connect + publish handshake.
	PublishTimeout time.Duration
	// MediaTimeout ends a stream whose publisher sent nothing for this long.
	MediaTimeout time.Duration
	// Reconnect governs how targets come back after their ingest failed.
	Reconnect ReconnectPolicy
	// Relays map WHIP stream keys to the targets their streams go to.
	Relays []Relay
	// MaxStreams limits concurrent sessions (0 = no limit).
	MaxStreams int
	Logger     *slog.Logger
}

func (c *Config) setDefaults() {
	if c.KeyframeInterval <= 0 {
		c.KeyframeInterval = 2 * time.Second
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 10 * time.Second
	}
	if c.MediaTimeout <= 0 {
		c.MediaTimeout = 10 * time.Second
	}
	c.Reconnect.setDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// iceSocketBuffer is the receive and send buffer asked for the ICE socket.
const iceSocketBuffer = 8 << 20

// Manager owns every live Stream and the shared ICE socket.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	udp    net.PacketConn
	mux    ice.UDPMux
	se     webrtc.SettingEngine
	frames *framePool

	totals totals // counters of closed streams and retired targets, for metrics

	mu       sync.Mutex
	streams  map[string]*Stream
	draining bool
	wg       sync.WaitGroup // closeAsync goroutines
}

// NewManager opens the ICE UDP port and returns a manager ready to accept
// publishers.
func NewManager(cfg Config) (*Manager, error) {
	cfg.setDefaults()
	if err := ValidateRelays(cfg.Relays); err != nil {
		return nil, fmt.Errorf("relays: %w", err)
	}
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{Port: cfg.ICEUDPPort})
	if err != nil {
		return nil, fmt.Errorf("ice udp port %d: %w", cfg.ICEUDPPort, err)
	}
	// One socket carries every session's media: the kernel's default
	// receive buffer (~208 KiB, ~90 packets) overflows in bursts at tens of
	// streams, which showed as loss in the load test. Ask for more; the
	// kernel caps it at net.core.rmem_max.
	_ = udp.SetReadBuffer(iceSocketBuffer)
	_ = udp.SetWriteBuffer(iceSocketBuffer)
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	mux := webrtc.NewICEUDPMux(lf.NewLogger("ice"), udp)
	port := udp.LocalAddr().(*net.UDPAddr).Port
	se := newSettingEngine(mux, port, cfg.ICEIPs)
	se.LoggerFactory = lf
	return &Manager{
		cfg:     cfg,
		log:     cfg.Logger,
		udp:     udp,
		mux:     mux,
		se:      se,
		frames:  newFramePool(),
		streams: map[string]*Stream{},
	}, nil
}

// ICEPort is the UDP port ICE listens on (useful when configured as 0).
func (m *Manager) ICEPort() int { return m.udp.LocalAddr().(*net.UDPAddr).Port }

// Ready reports whether new publishers are accepted.
func (m *Manager) Ready() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.draining
}

// CreateStream starts a publisher session from its SDP offer and returns the
// stream with its answer ready (ICE gathering complete: non-trickle). With
// targets, the broadcast starts as soon as media flows, and the answer caps
// the video at their lowest videobitrate (b=AS).
func (m *Manager) CreateStream(ctx context.Context, offer, name string, targets []TargetSpec) (*Stream, error) {
	m.mu.Lock()
	if m.draining {
		m.mu.Unlock()
		return nil, errorf(CodeLimitExceeded, "the gateway is shutting down and takes no new publishers")
	}
	if m.cfg.MaxStreams > 0 && len(m.streams) >= m.cfg.MaxStreams {
		m.mu.Unlock()
		return nil, errorf(CodeLimitExceeded, "the gateway already runs %d streams, its limit", m.cfg.MaxStreams)
	}
	m.mu.Unlock()
	if targets != nil {
		if err := ValidateTargets(targets); err != nil {
			return nil, err
		}
	}
	media, err := inspectOffer(offer)
	if err != nil {
		return nil, err
	}

	s, err := newStream(ctx, m, newID("st_"), name, offer, media)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.draining {
		m.mu.Unlock()
		s.Close(context.Background())
		return nil, errorf(CodeLimitExceeded, "the gateway is shutting down and takes no new publishers")
	}
	m.streams[s.id] = s
	m.mu.Unlock()
	m.totals.streams.Add(1)
	if targets != nil {
		if kbps := minBitrate(targets) / 1000; kbps > 0 {
			s.answer = withVideoBandwidth(s.answer, kbps)
		}
		s.StartBroadcastWhenReady(targets)
	}
	return s, nil
}

func minBitrate(targets []TargetSpec) int {
	low := 0
	for _, t := range targets {
		if t.VideoBitrate > 0 && (low == 0 || t.VideoBitrate < low) {
			low = t.VideoBitrate
		}
	}
	return low
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
		return nil, errorf(CodeNotFound, "no stream %q: it never existed or has been closed", id)
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

// CloseStream stops the stream's broadcast cleanly and ends the session.
func (m *Manager) CloseStream(ctx context.Context, id string) error {
	s, err := m.Stream(id)
	if err != nil {
		return err
	}
	s.Close(ctx)
	return nil
}

// closeAsync closes s on a goroutine the manager owns (Shutdown waits for it).
func (m *Manager) closeAsync(s *Stream) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		s.Close(context.Background())
	}()
}

func (m *Manager) forget(s *Stream) {
	m.mu.Lock()
	if m.streams[s.id] == s {
		delete(m.streams, s.id)
	}
	m.mu.Unlock()
}

// Shutdown refuses new publishers, stops every broadcast cleanly, closes every
// stream and the ICE socket.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	if m.draining {
		m.mu.Unlock()
		return nil // already shut down
	}
	m.draining = true
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range m.Streams() {
		wg.Go(func() {
			s.Close(ctx)
		})
	}
	wg.Wait()
	m.wg.Wait()
	return m.mux.Close() // closes the UDP socket too
}

func newID(prefix string) string {
	return prefix + strings.ToLower(rand.Text()[:16])
}
