package outpolicy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// maxRedirects is how many redirects an HTTP client of the policy follows.
const maxRedirects = 3

// HTTPClient is an HTTP client that dials only what the policy allows: no
// proxy (a proxy would be checked instead of the real host), every
// connection through Dial, and at most 3 redirects, each to an http(s)
// URL whose host is checked again (by CheckLiteral here, and by Dial when
// it connects). It has no overall timeout (audio streams are endless) but
// a 10 s response-header timeout. A restricted policy's client (one per
// request that made it) keeps no idle connections: nothing would close them.
func (p *Policy) HTTPClient() *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 15 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return p.Dial(ctx, d, network, addr)
			},
			TLSHandshakeTimeout:    10 * time.Second,
			ResponseHeaderTimeout:  10 * time.Second,
			MaxResponseHeaderBytes: 64 << 10,
			DisableKeepAlives:      p.Restricted(),
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return ErrRedirects
			}
			return p.CheckURL(req.URL)
		},
	}
}

// ErrRedirects: a server redirected more often than a client follows.
var ErrRedirects = errors.New("too many redirects")

// ErrScheme: a redirect to a scheme other than http or https.
var ErrScheme = errors.New("redirect to a scheme other than http or https")

// CheckURL applies CheckLiteral to an http(s) URL's host and port.
func (p *Policy) CheckURL(u *url.URL) error {
	port := 80
	switch u.Scheme {
	case "http":
	case "https":
		port = 443
	default:
		return ErrScheme
	}
	if s := u.Port(); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return ErrScheme
		}
		port = n
	}
	return p.CheckLiteral(u.Hostname(), port)
}
