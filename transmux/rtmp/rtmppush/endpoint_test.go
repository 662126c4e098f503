package rtmppush

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseEndpoint(t *testing.T) {
	cases := []struct {
		output, name                    string
		addr, app, stream, tcURL, redac string
	}{
		{"rtmp://a.rtmp.youtube.com/live2/abcd-efgh", "", "a.rtmp.youtube.com:1935", "live2", "abcd-efgh", "rtmp://a.rtmp.youtube.com/live2", "rtmp://a.rtmp.youtube.com/live2/****"},
		{"rtmps://live-api-s.facebook.com:443/rtmp/", "FB-123?s_bl=1&a=b", "live-api-s.facebook.com:443", "rtmp", "FB-123?s_bl=1&a=b", "rtmps://live-api-s.facebook.com:443/rtmp", "rtmps://live-api-s.facebook.com:443/rtmp/****"},
		{"rtmps://host/app", "key", "host:443", "app", "key", "rtmps://host/app", "rtmps://host/app/****"},
		{"RTMP://host:1936/app/inst/key?token=secret", "", "host:1936", "app/inst", "key?token=secret", "rtmp://host:1936/app/inst", "rtmp://host:1936/app/inst/****"},
		{"rtmp://host/a/b/c", "k", "host:1935", "a/b/c", "k", "rtmp://host/a/b/c", "rtmp://host/a/b/c/****"},
		{"rtmp://[::1]:1935/live/k", "", "[::1]:1935", "live", "k", "rtmp://[::1]:1935/live", "rtmp://[::1]:1935/live/****"},
		{"rtmp://[::1]/live/k", "", "[::1]:1935", "live", "k", "rtmp://[::1]/live", "rtmp://[::1]/live/****"},
		// With streamname, a ?query in the app belongs to the tcUrl (some
		// services authenticate there) and is never shown.
		{"rtmp://relay.example:1935/live?secret=QUERYSECRET", "key", "relay.example:1935", "live?secret=QUERYSECRET", "key", "rtmp://relay.example:1935/live?secret=QUERYSECRET", "rtmp://relay.example:1935/live/****"},
	}
	for _, c := range cases {
		e, err := ParseEndpoint(c.output, c.name)
		if err != nil {
			t.Errorf("%s: %v", c.redac, err)
			continue
		}
		if e.Addr() != c.addr || e.App() != c.app || e.StreamName() != c.stream || e.TCURL() != c.tcURL || e.Redacted() != c.redac {
			t.Errorf("%s: got addr=%s app=%s tcUrl=%s redacted=%s", c.redac, e.Addr(), e.App(), e.TCURL(), e.Redacted())
		}
		for _, s := range []string{e.String(), fmt.Sprint(e), fmt.Sprintf("%+v", e), fmt.Sprintf("%#v", e), fmt.Sprintf("%v", &e)} {
			if strings.Contains(s, e.StreamName()) {
				t.Errorf("formatted endpoint leaks the key: %s", s)
			}
		}
	}

	bad := []struct{ output, name string }{
		{"http://host/app/key", ""},
		{"srt://host/app/key", ""},
		{"host/app/key", ""},
		{"rtmp:///app/key", ""},
		{"rtmp://host", ""},
		{"rtmp://host/", "key"},
		{"rtmp://host/key", ""},
		{"rtmp://host/app/", ""},
		{"rtmp://host:99999/app/key", ""},
		{"rtmp://host:x/app/key", ""},
		{"rtmp://user:secretkey@host/app/key", ""},
		{"rtmp://host/app/key\r\n", ""},
	}
	for _, c := range bad {
		_, err := ParseEndpoint(c.output, c.name)
		if !errors.Is(err, ErrInvalidURL) {
			t.Errorf("%q: err = %v, want ErrInvalidURL", c.output, err)
			continue
		}
		if strings.Contains(err.Error(), "key") || strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: error quotes the input: %v", c.output, err)
		}
	}
}

func TestRedactServerText(t *testing.T) {
	e, _ := ParseEndpoint("rtmp://h/app/sk_123?tok=9", "")
	got := (&RejectedError{Code: "X", Description: e.redact("stream sk_123?tok=9 / sk_123 refused")}).Error()
	if strings.Contains(got, "sk_123") || strings.Contains(got, "tok=9") {
		t.Fatalf("key leaked: %s", got)
	}
}
