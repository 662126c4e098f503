package main

import (
	"encoding/json"
	"fmt"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/rtmpout"
)

// fileConfig is castbridge.yaml: OBS relays, each a stream key and the
// ingests its stream goes to. Targets take the same fields as the API's
// transcodingTargets.
//
//	relays:
//	  - name: studio      # optional: publish tokens name it (claim relay)
//	    key: my-obs-key
//	    targets:
//	      - output: rtmp://a.rtmp.youtube.com/live2
//	        streamname: YOUTUBE-KEY
//	      - output: rtmp://live.twitch.tv/app/TWITCH-KEY
type fileConfig struct {
	Relays []struct {
		Name    string           `yaml:"name"`
		Key     string           `yaml:"key"`
		Targets []map[string]any `yaml:"targets"`
	} `yaml:"relays"`
}

// loadRelays reads the relays of a config file.
func loadRelays(path string) ([]gateway.Relay, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var fc fileConfig
	if err := yaml.Unmarshal(raw, &fc); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	relays := make([]gateway.Relay, len(fc.Relays))
	for i, r := range fc.Relays {
		// Through JSON, so the file takes exactly what the API takes.
		body, err := json.Marshal(map[string]any{"targets": r.Targets})
		if err != nil {
			return nil, fmt.Errorf("config %s: relay %d: %w", path, i, err)
		}
		specs, err := rtmpout.ParseBroadcast(body)
		if err != nil {
			return nil, fmt.Errorf("config %s: relay %d: %w", path, i, err)
		}
		relays[i] = gateway.Relay{Name: r.Name, Key: r.Key, Targets: specs}
	}
	if err := gateway.ValidateRelays(relays); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return relays, nil
}
