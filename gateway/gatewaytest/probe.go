package gatewaytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
)

// ProbeStream is one stream as ffprobe reports it.
type ProbeStream struct {
	Index        int
	CodecType    string // "video", "audio", ...
	CodecName    string // "h264", "aac", ...
	Profile      string
	Width        int
	Height       int
	SampleRate   int
	Channels     int
	NbReadFrames int     // decoded frame count (-count_frames)
	Duration     float64 // seconds; NaN when ffprobe gives none
	StartTime    float64 // seconds; NaN when ffprobe gives none
}

// ProbeResult is what Probe found in a media file.
type ProbeResult struct {
	FormatName string
	Duration   float64 // seconds; NaN when ffprobe gives none
	StartTime  float64 // seconds; NaN when ffprobe gives none
	Streams    []ProbeStream
}

// Video returns the first video stream, or nil.
func (r ProbeResult) Video() *ProbeStream { return r.first("video") }

// Audio returns the first audio stream, or nil.
func (r ProbeResult) Audio() *ProbeStream { return r.first("audio") }

func (r ProbeResult) first(typ string) *ProbeStream {
	for i := range r.Streams {
		if r.Streams[i].CodecType == typ {
			return &r.Streams[i]
		}
	}
	return nil
}

// Probe runs ffprobe -count_frames -show_streams -show_format on a file.
func Probe(path string) (ProbeResult, error) {
	var raw struct {
		Streams []struct {
			Index        int    `json:"index"`
			CodecType    string `json:"codec_type"`
			CodecName    string `json:"codec_name"`
			Profile      string `json:"profile"`
			Width        int    `json:"width"`
			Height       int    `json:"height"`
			SampleRate   string `json:"sample_rate"`
			Channels     int    `json:"channels"`
			NbReadFrames string `json:"nb_read_frames"`
			Duration     string `json:"duration"`
			StartTime    string `json:"start_time"`
		} `json:"streams"`
		Format struct {
			FormatName string `json:"format_name"`
			Duration   string `json:"duration"`
			StartTime  string `json:"start_time"`
		} `json:"format"`
	}
	if err := ffprobeJSON(&raw, "-count_frames", "-show_streams", "-show_format", path); err != nil {
		return ProbeResult{}, err
	}
	res := ProbeResult{
		FormatName: raw.Format.FormatName,
		Duration:   parseFloat(raw.Format.Duration),
		StartTime:  parseFloat(raw.Format.StartTime),
	}
	for _, s := range raw.Streams {
		sr, _ := strconv.Atoi(s.SampleRate)
		nf, _ := strconv.Atoi(s.NbReadFrames)
		res.Streams = append(res.Streams, ProbeStream{
			Index: s.Index, CodecType: s.CodecType, CodecName: s.CodecName, Profile: s.Profile,
			Width: s.Width, Height: s.Height, SampleRate: sr, Channels: s.Channels,
			NbReadFrames: nf, Duration: parseFloat(s.Duration), StartTime: parseFloat(s.StartTime),
		})
	}
	return res, nil
}

// ProbePacket is one video packet of a file, as ffprobe -show_packets
// reports it.
type ProbePacket struct {
	PTSMillis int64 // presentation time in ms
	DTSMillis int64 // decoding time in ms
	Keyframe  bool
	Size      int
}

// ProbeFrames returns the packets of the first video stream in file order,
// with their timestamps in milliseconds and keyframe flags.
func ProbeFrames(path string) ([]ProbePacket, error) {
	var raw struct {
		Packets []struct {
			PTSTime string `json:"pts_time"`
			DTSTime string `json:"dts_time"`
			Flags   string `json:"flags"`
			Size    string `json:"size"`
		} `json:"packets"`
	}
	if err := ffprobeJSON(&raw, "-select_streams", "v:0", "-show_packets",
		"-show_entries", "packet=pts_time,dts_time,flags,size", path); err != nil {
		return nil, err
	}
	out := make([]ProbePacket, 0, len(raw.Packets))
	for _, p := range raw.Packets {
		size, _ := strconv.Atoi(p.Size)
		pts := parseFloat(p.PTSTime)
		dts := parseFloat(p.DTSTime)
		if math.IsNaN(pts) {
			pts = dts
		}
		if math.IsNaN(dts) {
			dts = pts
		}
		out = append(out, ProbePacket{
			PTSMillis: int64(math.Round(pts * 1000)),
			DTSMillis: int64(math.Round(dts * 1000)),
			Keyframe:  strings.Contains(p.Flags, "K"),
			Size:      size,
		})
	}
	return out, nil
}

// DecodeErrors decodes the whole file with ffmpeg -v error and returns what
// ffmpeg reported on stderr ("" for a clean file). err is set only when
// ffmpeg could not be run or failed outright. What the null muxer says is
// left out: it is no decoding error, and it complains ("non monotonically
// increasing dts") when two frames of a stream whose millisecond
// timestamps sit near the middle of its guessed frame rate's ticks round
// to the same tick.
func DecodeErrors(path string) (string, error) {
	cmd := exec.Command("ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-i", path, "-f", "null", "-")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil {
		return stderr.String(), fmt.Errorf("ffmpeg: %w: %s", err, stderr.String())
	}
	var out strings.Builder
	for line := range strings.Lines(stderr.String()) {
		if !strings.HasPrefix(line, "[null @ ") {
			out.WriteString(line)
		}
	}
	return out.String(), nil
}

func ffprobeJSON(v any, args ...string) error {
	args = append([]string{"-v", "error", "-of", "json"}, args...)
	cmd := exec.Command("ffprobe", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ffprobe %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), v); err != nil {
		return fmt.Errorf("ffprobe output: %w", err)
	}
	return nil
}

func parseFloat(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN()
	}
	return f
}

// StreamPacket is one packet of any stream of a file, as ffprobe
// -show_packets reports it, in file order.
type StreamPacket struct {
	CodecType string // "video", "audio"
	PTSMillis float64
	DTSMillis float64
	Keyframe  bool
}

// ProbePackets returns every packet of a file in file order: how a muxer
// interleaved its streams.
func ProbePackets(path string) ([]StreamPacket, error) {
	var raw struct {
		Packets []struct {
			CodecType string `json:"codec_type"`
			PTSTime   string `json:"pts_time"`
			DTSTime   string `json:"dts_time"`
			Flags     string `json:"flags"`
		} `json:"packets"`
	}
	if err := ffprobeJSON(&raw, "-show_packets", "-show_entries", "packet=codec_type,pts_time,dts_time,flags", path); err != nil {
		return nil, err
	}
	out := make([]StreamPacket, 0, len(raw.Packets))
	for _, p := range raw.Packets {
		pts, dts := parseFloat(p.PTSTime), parseFloat(p.DTSTime)
		if math.IsNaN(dts) {
			dts = pts
		}
		if math.IsNaN(pts) {
			pts = dts
		}
		out = append(out, StreamPacket{CodecType: p.CodecType, PTSMillis: pts * 1000, DTSMillis: dts * 1000,
			Keyframe: strings.Contains(p.Flags, "K")})
	}
	return out, nil
}
