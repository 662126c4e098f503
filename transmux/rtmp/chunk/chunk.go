// Package chunk implements the RTMP chunk stream layer (RTMP spec section 5.3):
// splitting messages into chunks on the way out and reassembling them on the
// way in.
//
// It exists next to go-rtmp (whose handshake and message codecs castbridge
// reuses) because go-rtmp's ChunkStreamer hands every outgoing message to a
// scheduler goroutine, allocates per message, omits the extended timestamp
// on continuation chunks (which breaks streams after 4.6 hours) and panics on
// some malformed input. The Reader here is push-based: it is fed whatever the
// connection returned and calls back once per complete message, so it can run
// inside any read loop, including a tap on a connection that go-rtmp's server
// owns.
package chunk

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
)

// Protocol control message types handled by the chunk layer itself.
const (
	TypeSetChunkSize = 1
	TypeAbort        = 2
)

// DefaultChunkSize is the chunk size both directions start with.
const DefaultChunkSize = 128

// MaxChunkSize bounds the chunk size a peer may announce. Messages are at most
// 16 MiB (24-bit length), so a larger chunk size changes nothing.
const MaxChunkSize = 1<<24 - 1

// maxChunkStreams bounds per-connection state; real peers use a handful.
const maxChunkStreams = 64

const extendedTimestamp = 0xffffff

// ErrProtocol reports input that is not a valid chunk stream.
var ErrProtocol = errors.New("rtmp chunk protocol violation")

// Message is one reassembled RTMP message.
type Message struct {
	ChunkStreamID uint32
	TypeID        uint8
	StreamID      uint32 // message stream id
	Timestamp     uint32
	// Payload is owned by the Reader and valid only during the callback.
	Payload []byte
}

type inStream struct {
	timestamp uint32
	delta     uint32 // last raw timestamp field, used by fmt 3 headers that start a message
	length    uint32
	typeID    uint8
	streamID  uint32
	extended  bool
	buf       []byte
}

// Reader reassembles messages from a chunk stream. It is not safe for
// concurrent use.
type Reader struct {
	chunkSize uint32
	pending   []byte
	streams   map[uint32]*inStream
	msg       Message
	maxLen    [256]uint32 // per message type; 0: MaxChunkSize
}

// SetMaxMessage bounds the length a peer may declare for messages of
// typeID, so that one it may not send (a huge command) is refused from its
// header, before anything of it is buffered.
func (r *Reader) SetMaxMessage(typeID uint8, n uint32) { r.maxLen[typeID] = n }

// NewReader returns a Reader expecting the default chunk size of 128.
func NewReader() *Reader {
	return &Reader{chunkSize: DefaultChunkSize, streams: make(map[uint32]*inStream)}
}

// ChunkSize returns the peer's current chunk size.
func (r *Reader) ChunkSize() uint32 { return r.chunkSize }

// Feed consumes p, calling fn for each message completed by it. Incomplete
// chunks are kept for the next call. Set Chunk Size and Abort messages are
// applied before fn sees them. An error from fn stops Feed and is returned.
func (r *Reader) Feed(p []byte, fn func(*Message) error) error {
	data := p
	if len(r.pending) > 0 {
		r.pending = append(r.pending, p...)
		data = r.pending
	}
	off := 0
	var err error
	for err == nil {
		var n int
		n, err = r.parseChunk(data[off:], fn)
		if n == 0 {
			break
		}
		off += n
	}
	rest := data[off:]
	if len(r.pending) > 0 {
		r.pending = r.pending[:copy(r.pending, rest)]
	} else if len(rest) > 0 {
		r.pending = append(r.pending[:0], rest...)
	}
	return err
}

// parseChunk parses one chunk at the start of b. It returns 0 and no error
// when b does not hold the whole chunk yet; nothing is committed then.
func (r *Reader) parseChunk(b []byte, fn func(*Message) error) (int, error) {
	if len(b) < 1 {
		return 0, nil
	}
	format := b[0] >> 6
	csid := uint32(b[0] & 0x3f)
	pos := 1
	switch csid {
	case 0:
		if len(b) < 2 {
			return 0, nil
		}
		csid = 64 + uint32(b[1])
		pos = 2
	case 1:
		if len(b) < 3 {
			return 0, nil
		}
		csid = 64 + uint32(b[1]) + uint32(b[2])<<8
		pos = 3
	}

	st := r.streams[csid]
	if st == nil {
		// Type 1 is tolerated: some encoders open a chunk stream with it.
		if format != 0 && format != 1 {
			return 0, fmt.Errorf("%w: chunk stream %d starts with a type %d header", ErrProtocol, csid, format)
		}
		if len(r.streams) >= maxChunkStreams {
			return 0, fmt.Errorf("%w: more than %d chunk streams", ErrProtocol, maxChunkStreams)
		}
		st = &inStream{}
		r.streams[csid] = st
	}

	hdrLen := [4]int{11, 7, 3, 0}[format]
	if len(b) < pos+hdrLen {
		return 0, nil
	}
	h := b[pos : pos+hdrLen]
	pos += hdrLen

	var tsField, length, msid uint32
	typeID := st.typeID
	length = st.length
	msid = st.streamID
	if format <= 2 {
		tsField = uint32(h[0])<<16 | uint32(h[1])<<8 | uint32(h[2])
	}
	if format <= 1 {
		length = uint32(h[3])<<16 | uint32(h[4])<<8 | uint32(h[5])
		typeID = h[6]
	}
	if format == 0 {
		msid = binary.LittleEndian.Uint32(h[7:11])
	}
	extended := st.extended
	if format <= 2 {
		extended = tsField == extendedTimestamp
	}
	if extended {
		if len(b) < pos+4 {
			return 0, nil
		}
		ext := binary.BigEndian.Uint32(b[pos : pos+4])
		pos += 4
		if format <= 2 {
			tsField = ext
		}
	}

	newMessage := len(st.buf) == 0
	if format != 3 && !newMessage {
		// A full header in the middle of a message: the peer abandoned it.
		st.buf = st.buf[:0]
		newMessage = true
	}
	if format != 3 || newMessage {
		if length > MaxChunkSize {
			return 0, fmt.Errorf("%w: message length %d", ErrProtocol, length)
		}
		if limit := r.maxLen[typeID]; limit != 0 && length > limit {
			return 0, fmt.Errorf("%w: message of type %d and length %d, the limit is %d", ErrProtocol, typeID, length, limit)
		}
	}
	remaining := length - uint32(len(st.buf))
	n := min(remaining, r.chunkSize)
	if uint32(len(b)-pos) < n {
		return 0, nil
	}

	// The whole chunk is here: commit the header.
	switch format {
	case 0:
		st.timestamp = tsField
		st.delta = tsField
		st.length, st.typeID, st.streamID = length, typeID, msid
	case 1:
		st.delta = tsField
		st.length, st.typeID = length, typeID
	case 2:
		st.delta = tsField
	}
	if format <= 2 {
		st.extended = extended
	}
	if newMessage && format != 0 {
		st.timestamp += st.delta
	}
	st.buf = append(st.buf, b[pos:pos+int(n)]...)
	pos += int(n)

	if uint32(len(st.buf)) < st.length {
		return pos, nil
	}
	r.msg = Message{
		ChunkStreamID: csid,
		TypeID:        st.typeID,
		StreamID:      st.streamID,
		Timestamp:     st.timestamp,
		Payload:       st.buf,
	}
	st.buf = st.buf[:0]
	if err := r.control(&r.msg); err != nil {
		return pos, err
	}
	return pos, fn(&r.msg)
}

// control applies the messages that change how chunks are parsed.
func (r *Reader) control(m *Message) error {
	if m.StreamID != 0 && m.ChunkStreamID != 2 {
		return nil
	}
	switch m.TypeID {
	case TypeSetChunkSize:
		if len(m.Payload) < 4 {
			return fmt.Errorf("%w: short Set Chunk Size", ErrProtocol)
		}
		size := binary.BigEndian.Uint32(m.Payload) & 0x7fffffff
		if size < 1 {
			return fmt.Errorf("%w: chunk size 0", ErrProtocol)
		}
		r.chunkSize = min(size, MaxChunkSize)
	case TypeAbort:
		if len(m.Payload) < 4 {
			return fmt.Errorf("%w: short Abort", ErrProtocol)
		}
		if st := r.streams[binary.BigEndian.Uint32(m.Payload)]; st != nil {
			st.buf = st.buf[:0]
		}
	}
	return nil
}

// Writer frames messages into chunks on a bufio.Writer. Every message starts
// with a type 0 header (absolute timestamp, no dependence on earlier
// headers, which every server handles) and continues with type 3 headers
// that repeat the extended timestamp when there is one, as the spec and
// ffmpeg/nginx-rtmp require. It does not allocate. It is not safe for
// concurrent use.
type Writer struct {
	w         *bufio.Writer
	chunkSize uint32
	hdr       [18]byte
}

// NewWriter returns a Writer with the default chunk size of 128.
func NewWriter(w *bufio.Writer) *Writer {
	return &Writer{w: w, chunkSize: DefaultChunkSize}
}

// SetChunkSize changes the size used for subsequent messages. The caller sends
// the Set Chunk Size message (with the old size) before calling it.
func (w *Writer) SetChunkSize(size uint32) {
	w.chunkSize = max(1, min(size, MaxChunkSize))
}

// ChunkSize returns the chunk size in use.
func (w *Writer) ChunkSize() uint32 { return w.chunkSize }

// WriteMessage writes one message; it is buffered until Flush.
func (w *Writer) WriteMessage(csid uint32, typeID uint8, streamID, timestamp uint32, payload []byte) error {
	if len(payload) > MaxChunkSize {
		return fmt.Errorf("rtmp chunk: message of %d bytes exceeds 16 MiB", len(payload))
	}
	if csid < 2 || csid > 65599 {
		return fmt.Errorf("rtmp chunk: chunk stream id %d out of range", csid)
	}
	ext := timestamp >= extendedTimestamp
	ts := timestamp
	if ext {
		ts = extendedTimestamp
	}
	basic := w.basicHeader(0, csid)
	h := w.hdr[:basic]
	length := uint32(len(payload))
	h = append(h,
		byte(ts>>16), byte(ts>>8), byte(ts),
		byte(length>>16), byte(length>>8), byte(length),
		typeID,
	)
	h = binary.LittleEndian.AppendUint32(h, streamID)
	if ext {
		h = binary.BigEndian.AppendUint32(h, timestamp)
	}
	if _, err := w.w.Write(h); err != nil {
		return err
	}
	for first := true; first || len(payload) > 0; first = false {
		if !first {
			basic = w.basicHeader(3, csid)
			h = w.hdr[:basic]
			if ext {
				h = binary.BigEndian.AppendUint32(h, timestamp)
			}
			if _, err := w.w.Write(h); err != nil {
				return err
			}
		}
		n := min(uint32(len(payload)), w.chunkSize)
		if _, err := w.w.Write(payload[:n]); err != nil {
			return err
		}
		payload = payload[n:]
	}
	return nil
}

// Flush writes buffered chunks to the connection.
func (w *Writer) Flush() error { return w.w.Flush() }

func (w *Writer) basicHeader(format byte, csid uint32) int {
	switch {
	case csid < 64:
		w.hdr[0] = format<<6 | byte(csid)
		return 1
	case csid < 320:
		w.hdr[0] = format << 6
		w.hdr[1] = byte(csid - 64)
		return 2
	default:
		w.hdr[0] = format<<6 | 1
		w.hdr[1] = byte(csid - 64)
		w.hdr[2] = byte((csid - 64) >> 8)
		return 3
	}
}
