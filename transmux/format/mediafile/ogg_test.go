package mediafile

import (
	"testing"
	"time"
)

func TestReadOpusFile(t *testing.T) {
	pkts, err := ReadOpusFile(TestdataPath("audio.ogg"))
	if err != nil {
		t.Fatal(err)
	}
	var total time.Duration
	for i, p := range pkts {
		if p.Duration != 20*time.Millisecond {
			t.Fatalf("packet %d lasts %v, want 20ms", i, p.Duration)
		}
		total += p.Duration
	}
	if total < 5*time.Second || total > 5100*time.Millisecond {
		t.Errorf("audio lasts %v, want about 5 s", total)
	}
}
