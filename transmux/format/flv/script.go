package flv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/yutopp/go-amf0"
)

// Video and audio codec ids as used in onMetaData (FLV spec, E.4.2.1).
const (
	VideoCodecAVC = 7
	AudioCodecAAC = 10
)

// ErrUnsupportedValue is returned for Go values that have no AMF0 mapping.
var ErrUnsupportedValue = errors.New("unsupported AMF0 value")

// maxDepth bounds nesting of data values so that a cyclic or absurdly deep
// value cannot exhaust the stack.
const maxDepth = 32

// Metadata is the content of the onMetaData script object that RTMP ingests
// read to learn about the stream before the first frame. Zero fields are left
// out, because ingests treat a present-but-zero value (say audiocodecid 0,
// which means linear PCM) as a statement about the stream.
type Metadata struct {
	Width, Height   int
	FrameRate       float64
	VideoCodecID    int     // VideoCodecAVC
	VideoDataRate   float64 // kbit/s
	AudioCodecID    int     // AudioCodecAAC
	AudioSampleRate float64 // Hz
	AudioChannels   int
	AudioDataRate   float64 // kbit/s
	Encoder         string
}

// AppendSetDataFrame appends the body of the data message
// "@setDataFrame", "onMetaData", {ECMA array} that publishers send right after
// NetStream.Publish.Start. The server strips "@setDataFrame" and keeps the
// rest as the stream's metadata for every viewer. Keys keep a fixed order so
// that the output is deterministic.
func AppendSetDataFrame(dst []byte, md Metadata) ([]byte, error) {
	props := make([]property, 0, 11)
	addNum := func(k string, v float64) {
		if v != 0 {
			props = append(props, property{k, v})
		}
	}
	addNum("width", float64(md.Width))
	addNum("height", float64(md.Height))
	addNum("framerate", md.FrameRate)
	addNum("videocodecid", float64(md.VideoCodecID))
	addNum("videodatarate", md.VideoDataRate)
	addNum("audiocodecid", float64(md.AudioCodecID))
	addNum("audiosamplerate", md.AudioSampleRate)
	if md.AudioChannels != 0 {
		props = append(props, property{"audiochannels", float64(md.AudioChannels)})
		props = append(props, property{"stereo", md.AudioChannels >= 2})
	}
	addNum("audiodatarate", md.AudioDataRate)
	if md.Encoder != "" {
		props = append(props, property{"encoder", md.Encoder})
	}

	e := newEncoder(dst)
	if err := e.value("@setDataFrame", 0); err != nil {
		return dst, fmt.Errorf("setDataFrame: %w", err)
	}
	if err := e.value("onMetaData", 0); err != nil {
		return dst, fmt.Errorf("setDataFrame: %w", err)
	}
	if err := e.ecmaArray(props, 0); err != nil {
		return dst, fmt.Errorf("setDataFrame: %w", err)
	}
	return e.buf, nil
}

// AppendDataMessage appends the body of an AMF0 data message: the handler name
// (e.g. "onCuePoint") followed by values, unless values is nil.
//
// Go values map to AMF0 as follows: string -> string, float64 and the integer
// types -> number, bool -> boolean, nil -> null, []any -> strict array,
// map[string]any and amf0.ECMAArray -> ECMA array at the top level (the form
// onMetaData uses) and object when nested. Map keys are written in sorted
// order. Other types give an error wrapping ErrUnsupportedValue.
func AppendDataMessage(dst []byte, handler string, values any) ([]byte, error) {
	e := newEncoder(dst)
	if err := e.value(handler, 0); err != nil {
		return dst, fmt.Errorf("data message %q: %w", handler, err)
	}
	if values == nil {
		return e.buf, nil
	}
	var err error
	switch v := values.(type) {
	case map[string]any:
		err = e.ecmaArray(sortedProps(v), 0)
	case amf0.ECMAArray:
		err = e.ecmaArray(sortedProps(v), 0)
	default:
		err = e.value(v, 0)
	}
	if err != nil {
		return dst, fmt.Errorf("data message %q: %w", handler, err)
	}
	return e.buf, nil
}

type property struct {
	key   string
	value any
}

func sortedProps(m map[string]any) []property {
	props := make([]property, 0, len(m))
	for k, v := range m {
		props = append(props, property{k, v})
	}
	slices.SortFunc(props, func(a, b property) int {
		switch {
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		}
		return 0
	})
	return props
}

// encoder writes AMF0 into a growing slice. Scalars go through go-amf0; the
// containers are framed here so that key order is controlled and only the
// documented Go types are accepted.
type encoder struct {
	buf []byte
	amf *amf0.Encoder
}

func newEncoder(dst []byte) *encoder {
	e := &encoder{buf: dst}
	e.amf = amf0.NewEncoder(e)
	return e
}

// Write lets go-amf0 append to buf.
func (e *encoder) Write(p []byte) (int, error) {
	e.buf = append(e.buf, p...)
	return len(p), nil
}

func (e *encoder) value(v any, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("nesting deeper than %d: %w", maxDepth, ErrUnsupportedValue)
	}
	switch v := v.(type) {
	case nil:
		return e.amf.Encode(nil)
	case string:
		if len(v) > math.MaxUint16 {
			return fmt.Errorf("string of %d bytes (long strings are not supported): %w", len(v), ErrUnsupportedValue)
		}
		return e.amf.Encode(v)
	case bool:
		return e.amf.Encode(v)
	case float64:
		return e.amf.Encode(v)
	case float32:
		return e.amf.Encode(float64(v))
	case int:
		return e.amf.Encode(float64(v))
	case int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return e.amf.Encode(v)
	case []any:
		e.buf = append(e.buf, byte(amf0.MarkerStrictArray))
		e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(len(v)))
		for i, item := range v {
			if err := e.value(item, depth+1); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
		return nil
	case map[string]any:
		return e.object(sortedProps(v), depth+1)
	case amf0.ECMAArray:
		return e.object(sortedProps(v), depth+1)
	default:
		return fmt.Errorf("%T: %w", v, ErrUnsupportedValue)
	}
}

func (e *encoder) object(props []property, depth int) error {
	e.buf = append(e.buf, byte(amf0.MarkerObject))
	return e.properties(props, depth)
}

func (e *encoder) ecmaArray(props []property, depth int) error {
	e.buf = append(e.buf, byte(amf0.MarkerEcmaArray))
	e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(len(props)))
	return e.properties(props, depth)
}

func (e *encoder) properties(props []property, depth int) error {
	for _, p := range props {
		if p.key == "" || len(p.key) > math.MaxUint16 {
			// An empty key would read as the object-end marker.
			return fmt.Errorf("key %q: %w", p.key, ErrUnsupportedValue)
		}
		e.buf = binary.BigEndian.AppendUint16(e.buf, uint16(len(p.key)))
		e.buf = append(e.buf, p.key...)
		if err := e.value(p.value, depth); err != nil {
			return fmt.Errorf("%s: %w", p.key, err)
		}
	}
	e.buf = append(e.buf, 0, 0, byte(amf0.MarkerObjectEnd))
	return nil
}
