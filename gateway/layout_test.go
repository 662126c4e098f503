package gateway_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/castbridge/castbridge/"

// allowedImports is docs/architecture.md's package table as code: the
// castbridge packages each package's non-test files may import. A package
// missing here fails the test, as does an import it does not list.
var allowedImports = map[string][]string{
	"transmux/rtp/rtpreorder":     nil,
	"transmux/rtp/rtph264":        {"transmux/rtp/aubuf"},
	"transmux/rtp/rtpframe":       {"transmux/rtp/aubuf"},
	"transmux/rtp/aubuf":          nil,
	"transmux/rtp/rtptime":        nil,
	"transmux/rtp/avsync":         nil,
	"transmux/rtp/twccfb":         nil,
	"transmux/codec/aaclc":        nil,
	"transmux/codec/opusdec":      nil,
	"transmux/codec/h264black":    nil,
	"transmux/format/flv":         nil,
	"transmux/format/flv/flvtest": nil,
	"transmux/format/mediafile":   nil,
	"transmux/rtmp/chunk":         nil,
	"transmux/rtmp/rtmppush":      {"transmux/rtmp/chunk", "transmux/format/flv"},
	"transmux/rtmp/ingest":        {"transmux/rtmp/chunk", "transmux/format/flv"},
	"transmux/source/icecast":     nil,

	"gateway/apierr":            nil,
	"gateway/events":            nil,
	"gateway/meter":             nil,
	"gateway/procs":             nil,
	"gateway/outpolicy":         nil,
	"gateway/cluster":           nil,
	"gateway/webhook":           {"gateway/events"},
	"gateway/media":             {"transmux/format/flv"},
	"gateway/avclock":           {"transmux/rtp/avsync"},
	"gateway/webrtcin":          {"gateway/apierr", "gateway/webrtcin/dtlssrtp", "transmux/rtp/twccfb"},
	"gateway/webrtcin/dtlssrtp": nil,
	"gateway/video": {"gateway/webrtcin", "gateway/media", "gateway/avclock",
		"transmux/rtp/rtpreorder", "transmux/rtp/rtph264", "transmux/rtp/rtpframe", "transmux/rtp/aubuf", "transmux/rtp/rtptime",
		"transmux/format/flv", "transmux/codec/h264black"},
	"gateway/audio": {"gateway/webrtcin", "gateway/media", "gateway/avclock", "gateway/apierr",
		"transmux/codec/aaclc", "transmux/codec/opusdec", "transmux/rtp/rtptime", "transmux/format/flv",
		"transmux/source/icecast", "gateway/outpolicy"},
	"gateway/rtmpout": {"gateway/apierr", "gateway/events", "gateway/media", "gateway/meter",
		"transmux/rtmp/rtmppush", "transmux/format/flv", "gateway/outpolicy"},
	"gateway": {"gateway/apierr", "gateway/audio", "gateway/avclock", "gateway/events", "gateway/media",
		"gateway/meter", "gateway/outpolicy", "gateway/rtmpout", "gateway/video", "gateway/webrtcin", "transmux/format/flv",
		"transmux/rtmp/ingest", "transmux/codec/aaclc", "transmux/rtp/aubuf"},
	"gateway/gatewaytest": {"transmux/format/mediafile"},

	"httpapi":               {"gateway", "gateway/apierr", "gateway/rtmpout", "gateway/cluster", "httpapi/auth"},
	"httpapi/auth":          nil,
	"httpapi/e2e":           nil,
	"cmd/castbridge":        {"gateway", "gateway/cluster", "gateway/events", "gateway/procs", "gateway/rtmpout", "gateway/webhook", "httpapi", "httpapi/auth", "transmux/rtmp/ingest"},
	"cmd/loadgen":           {"gateway/gatewaytest", "transmux/format/mediafile", "transmux/rtmp/ingest"},
	"cmd/loadgen/srtpfloor": nil,
}

// TestLayout checks every package's imports against allowedImports, and
// that no test in transmux/ leans on the gateway (its leaves are tested on
// their own).
func TestLayout(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (name == "testdata" || name == "node_modules" || strings.HasPrefix(name, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		isTest := strings.HasSuffix(path, "_test.go")
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		allowed, known := allowedImports[pkg]
		if !isTest {
			seen[pkg] = true
			if !known {
				t.Errorf("%s is not in the package table (docs/architecture.md, allowedImports)", pkg)
			}
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			dep, ok := strings.CutPrefix(p, module)
			if !ok {
				continue
			}
			switch {
			case isTest && strings.HasPrefix(pkg, "transmux/") && !strings.HasPrefix(dep, "transmux/"):
				t.Errorf("%s: a transmux test imports %s", filepath.Base(path), dep)
			case !isTest && known && !slices.Contains(allowed, dep):
				t.Errorf("%s imports %s, which the package table does not allow", pkg, dep)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for pkg := range allowedImports {
		if !seen[pkg] {
			if _, err := os.Stat(filepath.Join(root, pkg)); err != nil {
				t.Errorf("the package table lists %s, which is gone", pkg)
			}
		}
	}
}
