package flv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrMalformedData is returned for AMF0 that cannot be decoded.
var ErrMalformedData = errors.New("flv: malformed AMF0 data")

// maxDecodeItems bounds how many values one data message may declare, so a
// hostile peer cannot make the decoder allocate for a count it never sends.
const maxDecodeItems = 1 << 16

// MaxCommandSize bounds an AMF0 command message (connect, publish, _result,
// onStatus...). Real ones are a few hundred bytes; a connect with a large
// rtmpconnectinfo stays far below this.
const MaxCommandSize = 64 << 10

// Command is a decoded AMF0 command message: its name, transaction id and
// arguments (the command object first, where there is one).
type Command struct {
	Name string
	TxID float64
	Args []any
}

// DecodeCommand decodes an AMF0 command message (RTMP type 20) with the
// same bounds as DecodeData (nesting depth, element counts, declared
// lengths) and a size limit, so a peer cannot exhaust the stack or memory
// with what it sends. Both ends of castbridge's RTMP decode commands here.
func DecodeCommand(payload []byte) (Command, error) {
	if len(payload) > MaxCommandSize {
		return Command{}, fmt.Errorf("%w: command of %d bytes, the limit is %d", ErrMalformedData, len(payload), MaxCommandSize)
	}
	vals, err := DecodeData(payload)
	if err != nil {
		return Command{}, err
	}
	var c Command
	var ok bool
	if len(vals) == 0 {
		return c, fmt.Errorf("%w: empty command", ErrMalformedData)
	}
	if c.Name, ok = vals[0].(string); !ok {
		return c, fmt.Errorf("%w: command name is %T", ErrMalformedData, vals[0])
	}
	// FFmpeg's server sends some commands (onBWDone) without a
	// transaction id; it is 0 then.
	if len(vals) > 1 {
		if c.TxID, ok = vals[1].(float64); !ok {
			return c, fmt.Errorf("%w: transaction id is %T", ErrMalformedData, vals[1])
		}
		c.Args = vals[2:]
	}
	return c, nil
}

// DecodeData decodes the AMF0 values of a data message body (for example
// "@setDataFrame", "onMetaData", {...}). Objects and ECMA arrays become
// map[string]any, strict arrays []any, numbers float64. It exists because
// go-amf0 misreads an ECMA array whose last value is an object, and trusts
// declared lengths.
func DecodeData(body []byte) ([]any, error) {
	d := decoder{b: body}
	var out []any
	for len(d.b) > 0 {
		v, err := d.value(0)
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}

type decoder struct{ b []byte }

func (d *decoder) need(n int) ([]byte, error) {
	if len(d.b) < n {
		return nil, fmt.Errorf("%w: truncated", ErrMalformedData)
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p, nil
}

func (d *decoder) str(long bool) (string, error) {
	n := 2
	if long {
		n = 4
	}
	p, err := d.need(n)
	if err != nil {
		return "", err
	}
	l := int(binary.BigEndian.Uint16(p))
	if long {
		l = int(binary.BigEndian.Uint32(p))
	}
	s, err := d.need(l)
	return string(s), err
}

func (d *decoder) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested too deeply", ErrMalformedData)
	}
	t, err := d.need(1)
	if err != nil {
		return nil, err
	}
	switch t[0] {
	case 0x00: // number
		p, err := d.need(8)
		if err != nil {
			return nil, err
		}
		return math.Float64frombits(binary.BigEndian.Uint64(p)), nil
	case 0x01: // boolean
		p, err := d.need(1)
		if err != nil {
			return nil, err
		}
		return p[0] != 0, nil
	case 0x02: // string
		return d.str(false)
	case 0x0c: // long string
		return d.str(true)
	case 0x05, 0x06, 0x0d: // null, undefined, unsupported
		return nil, nil
	case 0x03: // object
		return d.properties(depth)
	case 0x08: // ECMA array: a count (advisory) then properties
		if _, err := d.need(4); err != nil {
			return nil, err
		}
		return d.properties(depth)
	case 0x0a: // strict array
		p, err := d.need(4)
		if err != nil {
			return nil, err
		}
		n := binary.BigEndian.Uint32(p)
		if n > maxDecodeItems || int(n) > len(d.b) {
			return nil, fmt.Errorf("%w: strict array of %d", ErrMalformedData, n)
		}
		arr := make([]any, 0, n)
		for range n {
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		return arr, nil
	case 0x0b: // date: ms since epoch + time zone
		p, err := d.need(10)
		if err != nil {
			return nil, err
		}
		return math.Float64frombits(binary.BigEndian.Uint64(p)), nil
	default:
		return nil, fmt.Errorf("%w: type 0x%02x", ErrMalformedData, t[0])
	}
}

// properties reads name/value pairs up to the object end marker (00 00 09).
func (d *decoder) properties(depth int) (map[string]any, error) {
	m := map[string]any{}
	for {
		name, err := d.str(false)
		if err != nil {
			return nil, err
		}
		if name == "" && len(d.b) > 0 && d.b[0] == 0x09 {
			d.b = d.b[1:]
			return m, nil
		}
		if len(m) >= maxDecodeItems {
			return nil, fmt.Errorf("%w: too many properties", ErrMalformedData)
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[name] = v
	}
}
