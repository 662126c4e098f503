package gateway_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/castbridge/castbridge/gateway"
)

// TestEventNamesComplete finds every EventName method of the gateway's and
// rtmpout's sources and checks that EventNames lists its name (all but
// ReceivedWebRTCStats, which is not a bus event), so a new event is never
// silently left out of the webhooks' choices.
func TestEventNamesComplete(t *testing.T) {
	names := gateway.EventNames()
	var found []string
	for _, dir := range []string{".", "rtmpout"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		fset := token.NewFileSet()
		for _, f := range files {
			af, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range af.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Recv == nil || fd.Name.Name != "EventName" || len(fd.Body.List) != 1 {
					continue
				}
				ret, ok := fd.Body.List[0].(*ast.ReturnStmt)
				if !ok || len(ret.Results) != 1 {
					continue
				}
				lit, ok := ret.Results[0].(*ast.BasicLit)
				if !ok {
					continue
				}
				name, _ := strconv.Unquote(lit.Value)
				found = append(found, name)
			}
		}
	}
	if len(found) < 10 {
		t.Fatalf("found only %v", found)
	}
	for _, n := range found {
		if in := slices.Contains(names, n); in == (n == "ReceivedWebRTCStats") {
			t.Errorf("%s: in EventNames %v", n, in)
		}
	}
	if len(names) != len(found)-1 {
		t.Errorf("EventNames %v, event types %v", names, found)
	}
}
