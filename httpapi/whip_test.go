package httpapi

import "testing"

func TestIfMatch(t *testing.T) {
	if ifMatch(nil) != nil {
		t.Error("no If-Match header is not a precondition")
	}
	cases := []struct {
		header []string
		etag   string
		want   bool
	}{
		{[]string{"*"}, "abc", true},
		{[]string{`"abc"`}, "abc", true},
		{[]string{`"x", "abc"`}, "abc", true},
		{[]string{`"x"`, `"abc"`}, "abc", true},
		{[]string{`"abd"`}, "abc", false},
		{[]string{`W/"abc"`}, "abc", false}, // If-Match compares strongly
		{[]string{`abc`}, "abc", false},     // an entity tag is quoted
	}
	for _, c := range cases {
		if got := ifMatch(c.header)(c.etag); got != c.want {
			t.Errorf("If-Match %q against %q: %v, want %v", c.header, c.etag, got, c.want)
		}
	}
}
