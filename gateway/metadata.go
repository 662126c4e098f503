package gateway

import (
	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/transmux/format/flv"
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
		return apierr.Errorf(apierr.CodeMetadataInvalid, "handlerName must be %q or %q, not %q", HandlerOnMetaData, HandlerOnCuePoint, handler)
	}
	if _, ok := values.(map[string]any); !ok {
		return apierr.Errorf(apierr.CodeMetadataInvalid, "values must be an object")
	}
	if d := depth(values); d > maxMetadataDepth {
		return apierr.Errorf(apierr.CodeMetadataInvalid, "values nest %d levels deep; at most %d are allowed", d, maxMetadataDepth)
	}
	if _, err := flv.AppendDataMessage(nil, handler, values); err != nil {
		return apierr.Wrap(apierr.CodeMetadataInvalid, err, "values cannot be written as AMF0: %v", err)
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
