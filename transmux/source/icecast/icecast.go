// Package icecast reads an Icecast/SHOUTcast (or any HTTP) audio stream and
// yields its MP3 or AAC frames, so a target can take its audio from a radio
// stream instead of the publisher.
//
// The stream is reconnected with backoff (1 s doubling to 10 s) whenever it
// ends or fails, for as long as Run's context lives.
package icecast

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg1audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
)

// Codec is the codec of a stream.
type Codec int

// Codecs a Source recognises.
const (
	MP3 Codec = iota + 1
	AAC
)

func (c Codec) String() string {
	switch c {
	case MP3:
		return "MP3"
	case AAC:
		return "AAC"
	}
	return "unknown"
}

// Frame is one audio frame of the stream.
type Frame struct {
	Codec Codec
	// Data is an MP3 frame including its header, or a raw AAC frame
	// without ADTS header. Valid only during the callback.
	Data       []byte
	Samples    int // per channel
	SampleRate int
	Channels   int
	// ASC is the AudioSpecificConfig (AAC only); it changes only when the
	// stream's format does. Valid only during the callback.
	ASC []byte
}

// Config configures a Source.
type Config struct {
	URL string
	// Client defaults to an http.Client with no overall timeout (streams
	// are endless) but a 10 s response-header timeout.
	Client *http.Client
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the reconnect delay (1 s, 10 s).
	MinBackoff, MaxBackoff time.Duration
}

// Source is an HTTP audio stream.
type Source struct {
	cfg Config
	log *slog.Logger
}

// New checks the URL (see Validate) and returns a Source.
func New(cfg Config) (*Source, error) {
	if err := Validate(cfg.URL); err != nil {
		return nil, err
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			ResponseHeaderTimeout: 10 * time.Second,
		}}
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Source{cfg: cfg, log: log.With("component", "icecast", "url", redact(cfg.URL))}, nil
}

// ErrInvalidURL is wrapped by Validate's errors.
var ErrInvalidURL = errors.New("invalid icecast URL")

// Validate checks that rawURL is an absolute http or https URL with a host,
// without touching the network.
func Validate(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text quotes the URL
		}
		return fmt.Errorf("%w: %v", ErrInvalidURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: scheme %q, want http or https", ErrInvalidURL, u.Scheme)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%w: no host", ErrInvalidURL)
	}
	return nil
}

// Probe checks within 3 s that rawURL answers a GET with 200 and an audio
// content type (or application/octet-stream), for a start-time check that
// can turn a bad URL into a 400 instead of a silent target.
func Probe(ctx context.Context, client *http.Client, rawURL string) error {
	if err := Validate(rawURL); err != nil {
		return err
	}
	if client == nil {
		client = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := get(ctx, client, rawURL)
	if err != nil {
		return fmt.Errorf("%s %w", redact(rawURL), err)
	}
	resp.Body.Close()
	return nil
}

// ErrUnreachable is wrapped by the errors of a stream that cannot be
// reached, or did not answer as an HTTP server: refused, reset, timed out
// and a peer that is not HTTP look the same (so a probe is no port
// scanner), and the peer's bytes are never quoted. Detail has the cause.
var ErrUnreachable = errors.New("cannot be reached as an HTTP stream")

// FetchError is a failed request: its text is ErrUnreachable's, the cause
// (without the URL) is unwrapped or read with Detail, for debug logs.
type FetchError struct{ err error }

func (e *FetchError) Error() string        { return ErrUnreachable.Error() }
func (e *FetchError) Unwrap() []error      { return []error{ErrUnreachable, e.err} }
func (e *FetchError) Detail() string       { return e.err.Error() }
func (e *FetchError) Is(target error) bool { return target == ErrUnreachable }

func get(ctx context.Context, client *http.Client, rawURL string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, &FetchError{errors.New("bad request")}
	}
	// No interleaved ICY metadata: the body is then pure audio.
	req.Header.Set("Icy-MetaData", "0")
	req.Header.Set("User-Agent", "castbridge")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text quotes the URL, path and query
		}
		return nil, &FetchError{err}
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		// The code only: the reason phrase is the peer's text.
		return nil, fmt.Errorf("answered HTTP %d, want 200", resp.StatusCode)
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if ct != "" && !strings.HasPrefix(ct, "audio/") && ct != "application/octet-stream" {
		resp.Body.Close()
		return nil, errors.New("does not serve audio (its content type is neither audio/* nor application/octet-stream)")
	}
	return resp, nil
}

// redact keeps the scheme and host of a URL, for logs and errors: its
// credentials, path and query may hold tokens.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host + "/****"
}

// Redact is redact for callers: scheme://host/**** .
func Redact(rawURL string) string { return redact(rawURL) }

// Run reads the stream and calls fn for each frame, reconnecting with
// backoff when it ends or fails, until ctx ends (returns ctx.Err()) or fn
// returns an error (returned). Backoff restarts at MinBackoff after a
// connection that delivered frames.
func (s *Source) Run(ctx context.Context, fn func(Frame) error) error {
	backoff := s.cfg.MinBackoff
	p := &parser{}
	for {
		n, err := s.once(ctx, p, fn)
		var cbErr callbackError
		if errors.As(err, &cbErr) {
			return cbErr.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if n > 0 {
			backoff = s.cfg.MinBackoff
		}
		s.log.Warn("stream ended, reconnecting", "err", err, "frames", n, "in", backoff)
		var fe *FetchError
		if errors.As(err, &fe) {
			s.log.Debug("stream connect failed", "detail", fe.Detail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.cfg.MaxBackoff)
	}
}

type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

// once reads one connection until it ends; it returns the frames delivered.
func (s *Source) once(ctx context.Context, p *parser, fn func(Frame) error) (int, error) {
	resp, err := get(ctx, s.cfg.Client, s.cfg.URL)
	if err != nil {
		return 0, fmt.Errorf("icecast connect: %w", err)
	}
	defer resp.Body.Close()
	s.log.Info("connected", "content_type", resp.Header.Get("Content-Type"))
	p.reset(resp.Body)
	n := 0
	for {
		f, err := p.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // a live stream has no end
			}
			return n, fmt.Errorf("icecast read: %w", err)
		}
		if err := fn(f); err != nil {
			return n, callbackError{err}
		}
		n++
	}
}

// maxResync bounds how many bytes are skipped looking for a frame before
// the stream is declared not MP3/AAC.
const maxResync = 64 * 1024

// ErrNotAudio is returned when no MP3 or ADTS frames are found.
var ErrNotAudio = errors.New("no MP3 or AAC ADTS frames in stream")

// parser splits a byte stream into MP3 or ADTS frames. A frame is accepted
// when the next frame header follows it, so stray sync words in garbage or
// ID3 tags are not taken for frames.
type parser struct {
	r   *bufio.Reader
	asc []byte
	// key of the ADTS header fields the ASC was built from
	ascKey [2]byte
}

func (p *parser) reset(r io.Reader) {
	if p.r == nil {
		p.r = bufio.NewReaderSize(r, 32*1024)
	} else {
		p.r.Reset(r)
	}
}

type header struct {
	codec      Codec
	length     int
	hdrLen     int
	samples    int
	sampleRate int
	channels   int
}

func parseHeader(b []byte) (header, bool) {
	if len(b) < 7 || b[0] != 0xff || b[1]&0xe0 != 0xe0 {
		return header{}, false
	}
	if b[1]&0xf6 == 0xf0 { // 12-bit sync, layer 00: ADTS
		sri := b[2] >> 2 & 0x0f
		cc := (b[2]&1)<<2 | b[3]>>6
		length := int(b[3]&0x03)<<11 | int(b[4])<<3 | int(b[5])>>5
		hl := 7
		if b[1]&1 == 0 {
			hl = 9
		}
		if sri > 12 || cc == 0 || length <= hl {
			return header{}, false
		}
		ch := int(cc)
		if cc == 7 {
			ch = 8
		}
		return header{codec: AAC, length: length, hdrLen: hl, samples: 1024 * (int(b[6]&3) + 1),
			sampleRate: adtsRates[sri], channels: ch}, true
	}
	var h mpeg1audio.FrameHeader
	if h.Unmarshal(b) != nil {
		return header{}, false
	}
	length := h.FrameLen()
	if h.MPEG2 && h.Layer == 3 {
		// MPEG-2 Layer III frames hold 576 samples: 72*bitrate/rate
		// (mediacommon's FrameLen uses MPEG-1's 144).
		length = 72 * h.Bitrate / h.SampleRate
		if h.Padding {
			length++
		}
	}
	ch := 2
	if h.ChannelMode == mpeg1audio.ChannelModeMono {
		ch = 1
	}
	if length < 4 {
		return header{}, false
	}
	return header{codec: MP3, length: length, samples: h.SampleCount(), sampleRate: h.SampleRate, channels: ch}, true
}

var adtsRates = [13]int{96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350}

// next returns the next frame; its slices alias the reader's buffer and
// stay valid until the next call (Discard only advances past bytes already
// buffered, it does not refill).
func (p *parser) next() (Frame, error) {
	skipped := 0
	for {
		b, err := p.r.Peek(7)
		if err != nil {
			return Frame{}, err
		}
		if skipped == 0 && string(b[:3]) == "ID3" {
			if err := p.skipID3(b); err != nil {
				return Frame{}, err
			}
			continue
		}
		h, ok := parseHeader(b)
		if ok {
			// Confirm with the following header (or EOF right after).
			full, err := p.r.Peek(h.length + 7)
			switch {
			case err == nil:
				if nh, ok2 := parseHeader(full[h.length:]); ok2 && nh.codec == h.codec && nh.sampleRate == h.sampleRate {
					return p.frame(h, full[:h.length])
				}
			case errors.Is(err, io.EOF) && len(full) == h.length:
				return p.frame(h, full)
			case errors.Is(err, bufio.ErrBufferFull):
				// Longer than the buffer: not a real frame.
			case len(full) < h.length+7:
				return Frame{}, err
			}
		}
		if _, err := p.r.Discard(1); err != nil {
			return Frame{}, err
		}
		if skipped++; skipped > maxResync {
			return Frame{}, ErrNotAudio
		}
	}
}

func (p *parser) skipID3(b []byte) error {
	hdr, err := p.r.Peek(10)
	if err != nil {
		return err
	}
	size := int(hdr[6]&0x7f)<<21 | int(hdr[7]&0x7f)<<14 | int(hdr[8]&0x7f)<<7 | int(hdr[9]&0x7f)
	if hdr[5]&0x10 != 0 {
		size += 10 // footer
	}
	_, err = p.r.Discard(10 + size)
	return err
}

func (p *parser) frame(h header, buf []byte) (Frame, error) {
	f := Frame{Codec: h.codec, Data: buf, Samples: h.samples, SampleRate: h.sampleRate, Channels: h.channels}
	if h.codec == AAC {
		key := [2]byte{buf[2], buf[3] & 0xc0}
		if p.asc == nil || key != p.ascKey {
			cfg := mpeg4audio.AudioSpecificConfig{
				Type:          mpeg4audio.ObjectType(buf[2]>>6 + 1),
				SampleRate:    h.sampleRate,
				ChannelConfig: (buf[2]&1)<<2 | buf[3]>>6,
			}
			asc, err := cfg.Marshal()
			if err != nil {
				return Frame{}, fmt.Errorf("icecast: AudioSpecificConfig: %w", err)
			}
			p.asc, p.ascKey = asc, key
		}
		f.Data = buf[h.hdrLen:]
		f.ASC = p.asc
	}
	if _, err := p.r.Discard(h.length); err != nil {
		return Frame{}, err
	}
	return f, nil
}
