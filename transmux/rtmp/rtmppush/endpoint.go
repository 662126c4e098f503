package rtmppush

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Endpoint is a parsed and validated ingest address. The stream name (the
// stream key, a secret) is never part of its String, GoString or Redacted
// output.
type Endpoint struct {
	scheme   string // "rtmp" or "rtmps"
	hostport string // as written, port optional
	addr     string // host:port to dial
	hostname string // for TLS server name
	app      string
	name     string
}

// ParseEndpoint parses an ingest address.
//
// output is an rtmp:// or rtmps:// URL (default ports 1935 and 443). When
// streamName is non-empty, output is the application URL (the app may
// contain '/'); otherwise the last path element of output is the stream name,
// including any ?query, which belongs to the name (services put auth tokens
// there). Errors wrap ErrInvalidURL and never quote the input, which may hold
// the key.
func ParseEndpoint(output, streamName string) (Endpoint, error) {
	invalid := func(why string) (Endpoint, error) {
		return Endpoint{}, fmt.Errorf("%w: %s", ErrInvalidURL, why)
	}
	i := strings.Index(output, "://")
	if i < 0 {
		return invalid("missing scheme")
	}
	var e Endpoint
	e.scheme = strings.ToLower(output[:i])
	defaultPort := ""
	switch e.scheme {
	case "rtmp":
		defaultPort = "1935"
	case "rtmps":
		defaultPort = "443"
	default:
		return invalid("scheme must be rtmp or rtmps")
	}
	rest := output[i+3:]
	path := ""
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		e.hostport, path = rest[:j], rest[j+1:]
	} else {
		e.hostport = rest
	}
	if e.hostport == "" {
		return invalid("no host")
	}
	if strings.ContainsAny(e.hostport, "@?# \t") {
		return invalid("malformed host")
	}
	host, port := e.hostport, defaultPort
	if h, p, err := net.SplitHostPort(e.hostport); err == nil {
		host, port = h, p
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return invalid("bad port")
		}
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	} else if strings.Contains(host, ":") {
		return invalid("malformed host")
	}
	if host == "" {
		return invalid("no host")
	}
	e.hostname = host
	e.addr = net.JoinHostPort(host, port)

	if streamName != "" {
		e.app = strings.Trim(path, "/")
		e.name = streamName
	} else {
		query := ""
		if q := strings.IndexByte(path, '?'); q >= 0 {
			path, query = path[:q], path[q:]
		}
		slash := strings.LastIndexByte(path, '/')
		if slash < 0 {
			if path == "" {
				return invalid("no application")
			}
			return invalid("no stream name")
		}
		e.app = strings.Trim(path[:slash], "/")
		e.name = path[slash+1:]
		if e.name == "" {
			return invalid("no stream name")
		}
		e.name += query
	}
	if e.app == "" {
		return invalid("no application")
	}
	if strings.ContainsAny(e.app, " \t\r\n") || strings.ContainsAny(e.name, "\r\n") {
		return invalid("whitespace in path")
	}
	return e, nil
}

// Redacted returns rtmp://host[:port]/app/**** . An app's ?query (with
// streamname given, services put tokens there) is left out with the key.
func (e Endpoint) Redacted() string {
	if e.scheme == "" {
		return "rtmp://<invalid>"
	}
	app, _, _ := strings.Cut(e.app, "?")
	return e.scheme + "://" + e.hostport + "/" + app + "/****"
}

// String returns the redacted form.
func (e Endpoint) String() string { return e.Redacted() }

// GoString returns the redacted form, so that %#v does not print the key.
func (e Endpoint) GoString() string { return "rtmppush.Endpoint(" + e.Redacted() + ")" }

// TCURL returns the application URL sent as tcUrl in connect.
func (e Endpoint) TCURL() string { return e.scheme + "://" + e.hostport + "/" + e.app }

// Scheme returns "rtmp" or "rtmps".
func (e Endpoint) Scheme() string { return e.scheme }

// Addr returns the host:port to dial.
func (e Endpoint) Addr() string { return e.addr }

// App returns the application name.
func (e Endpoint) App() string { return e.app }

// StreamName returns the stream name (the secret stream key, with its query).
// Do not log it.
func (e Endpoint) StreamName() string { return e.name }

// redact replaces the stream name (and its parts) in s, for server-provided
// text that may echo it.
func (e Endpoint) redact(s string) string {
	if e.name == "" {
		return s
	}
	s = strings.ReplaceAll(s, e.name, "****")
	if q := strings.IndexByte(e.name, '?'); q > 0 {
		s = strings.ReplaceAll(s, e.name[:q], "****")
	}
	return s
}

// Hostname returns the host as written in the URL, without port or
// brackets: a name or an IP address.
func (e Endpoint) Hostname() string { return e.hostname }

// Port returns the port to dial.
func (e Endpoint) Port() int {
	_, p, _ := net.SplitHostPort(e.addr)
	n, _ := strconv.Atoi(p)
	return n
}
