package gateway

import (
	"fmt"
	"maps"

	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/source/icecast"
)

// Metadata handler names a client may send (sendMetaData).
const (
	HandlerOnMetaData = "onMetaData"
	HandlerOnCuePoint = "onCuePoint"
)

// maxMetadataDepth is how deeply values may nest (API.md).
const maxMetadataDepth = 6

// validateMetadata checks a sendMetaData call before anything is written.
func validateMetadata(handler string, values any) error {
	if handler != HandlerOnMetaData && handler != HandlerOnCuePoint {
		return errorf(CodeMetadataInvalid, "handlerName must be %q or %q, not %q", HandlerOnMetaData, HandlerOnCuePoint, handler)
	}
	if _, ok := values.(map[string]any); !ok {
		return errorf(CodeMetadataInvalid, "values must be an object")
	}
	if d := depth(values); d > maxMetadataDepth {
		return errorf(CodeMetadataInvalid, "values nest %d levels deep; at most %d are allowed", d, maxMetadataDepth)
	}
	if _, err := flv.AppendDataMessage(nil, handler, values); err != nil {
		return &Error{Code: CodeMetadataInvalid, Message: fmt.Sprintf("values cannot be written as AMF0: %v", err), Err: err}
	}
	return nil
}

// depth counts nesting levels: a flat object is 1.
func depth(v any) int {
	d := 0
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			d = max(d, depth(e))
		}
		return d + 1
	case []any:
		for _, e := range x {
			d = max(d, depth(e))
		}
		return d + 1
	}
	return 0
}

// metadataValues is the onMetaData a target sends: what the gateway knows of
// the stream, overlaid with the client's last onMetaData values.
func (t *Target) metadataValues(ps *paramSet) map[string]any {
	md := map[string]any{"encoder": encoderName}
	if ps != nil {
		fps := ps.spsFPS
		if v := t.b.s.video; fps == 0 && v != nil {
			fps = v.fps()
		}
		md["width"] = float64(ps.width)
		md["height"] = float64(ps.height)
		md["framerate"] = roundTo(fps, 100)
		md["videocodecid"] = float64(flv.VideoCodecAVC)
		if t.spec.VideoBitrate > 0 {
			md["videodatarate"] = float64(t.spec.VideoBitrate) / 1000
		}
	}
	t.audioMetadata(md)
	if user := t.b.s.userMetadata(); user != nil {
		maps.Copy(md, user)
	}
	return md
}

// audioMetadata adds what the target's audio is: AAC (audiocodecid 10),
// Opus as E-RTMP (audiocodecid the FourCC "Opus"), or the Icecast source's
// MP3 (2) or AAC once known.
func (t *Target) audioMetadata(md map[string]any) {
	switch t.audioKind {
	case audioKindAAC:
		md["audiocodecid"] = float64(flv.AudioCodecAAC)
		md["audiosamplerate"] = float64(audioRate)
		md["audiosamplesize"] = float64(16)
		md["audiochannels"] = float64(2)
		md["stereo"] = true
		md["audiodatarate"] = float64(t.audioBitrate) / 1000
	case audioKindOpus:
		md["audiocodecid"] = float64(fourCCOpusID)
		md["audiosamplerate"] = float64(audioRate)
		md["audiochannels"] = float64(2)
		md["stereo"] = true
	case audioKindIcecast:
		switch icecast.Codec(t.icecast.codec.Load()) {
		case icecast.MP3:
			md["audiocodecid"] = float64(2)
		case icecast.AAC:
			md["audiocodecid"] = float64(flv.AudioCodecAAC)
		}
		if r := t.icecast.rate.Load(); r > 0 {
			md["audiosamplerate"] = float64(r)
		}
	}
}

// appendOnMetaData builds "@setDataFrame", "onMetaData", {values}.
func appendOnMetaData(dst []byte, values map[string]any) ([]byte, error) {
	dst, err := flv.AppendDataMessage(dst, "@setDataFrame", nil)
	if err != nil {
		return dst, err
	}
	return flv.AppendDataMessage(dst, HandlerOnMetaData, values)
}
