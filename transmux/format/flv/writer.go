package flv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	headerSize    = 9
	tagHeaderSize = 11
	maxBodySize   = 1<<24 - 1
)

// ErrTagTooLarge is returned for tag bodies that do not fit FLV's 24-bit size.
var ErrTagTooLarge = errors.New("flv tag body larger than 16 MiB")

// Writer writes an FLV file: the file header, then tags each followed by its
// PreviousTagSize. Every tag goes out in a single Write so that a reader of a
// file being recorded never sees half a tag header.
//
// A Writer is not safe for concurrent use.
type Writer struct {
	w   io.Writer
	buf []byte
}

// NewWriter writes the FLV header (with the audio and video presence flags)
// and PreviousTagSize0 to w.
func NewWriter(w io.Writer, hasAudio, hasVideo bool) (*Writer, error) {
	var flags byte
	if hasAudio {
		flags |= 0x04
	}
	if hasVideo {
		flags |= 0x01
	}
	hdr := [headerSize + 4]byte{'F', 'L', 'V', 1, flags, 0, 0, 0, headerSize, 0, 0, 0, 0}
	if _, err := w.Write(hdr[:]); err != nil {
		return nil, fmt.Errorf("flv write header: %w", err)
	}
	return &Writer{w: w}, nil
}

// WriteTag writes one tag. timestamp is in milliseconds; its upper 8 bits go
// into the TimestampExtended byte, so streams longer than 4.6 hours keep
// correct times.
func (w *Writer) WriteTag(tagType uint8, timestamp uint32, body []byte) error {
	if len(body) > maxBodySize {
		return fmt.Errorf("flv write tag (type %d, %d bytes): %w", tagType, len(body), ErrTagTooLarge)
	}
	size := len(body)
	b := w.buf[:0]
	b = append(b,
		tagType,
		byte(size>>16), byte(size>>8), byte(size),
		byte(timestamp>>16), byte(timestamp>>8), byte(timestamp),
		byte(timestamp>>24),
		0, 0, 0, // stream id
	)
	b = append(b, body...)
	b = binary.BigEndian.AppendUint32(b, uint32(tagHeaderSize+size))
	w.buf = b
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("flv write tag (type %d, ts %d): %w", tagType, timestamp, err)
	}
	return nil
}
