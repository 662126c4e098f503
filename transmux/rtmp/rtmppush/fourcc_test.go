package rtmppush_test

import (
	"context"
	"slices"
	"testing"

	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

// TestFourCCListInConnect: the E-RTMP fourCcList goes into the connect
// command object as a strict array of strings, as MediaMTX's and OBS's
// ingests read it.
func TestFourCCListInConnect(t *testing.T) {
	o, addr := startIngest(t, nil)
	p, err := rtmppush.Dial(context.Background(), rtmppush.Config{
		Endpoint:   endpoint(t, "rtmp://"+addr+"/live/key"),
		FourCCList: []string{"vp09"},
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	infos, _, _ := o.snapshot()
	if len(infos) != 1 {
		t.Fatalf("%d publishes", len(infos))
	}
	list, ok := infos[0].Connect["fourCcList"].([]any)
	if !ok || !slices.Equal(list, []any{"vp09"}) {
		t.Fatalf("connect fourCcList = %#v", infos[0].Connect["fourCcList"])
	}
}
