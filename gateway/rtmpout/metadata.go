package rtmpout

import (
	"maps"

	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/transmux/format/flv"
)

// encoderName goes into onMetaData.
const encoderName = "castbridge"

// metadataValues is the onMetaData a target sends: what the gateway knows of
// the stream, overlaid with the client's last onMetaData values. The keys
// are FFmpeg's FLV muxer's (libavformat/flvenc.c), which ingests read:
// duration and filesize 0 as a live muxer writes them, the video's width,
// height, videodatarate (kbit/s), framerate and videocodecid, the audio's
// audiodatarate, audiosamplerate, audiosamplesize, stereo and audiocodecid
// (from the audio output), and encoder.
func (t *Target) metadataValues(ps *media.ParamSet) map[string]any {
	md := map[string]any{"encoder": encoderName, "duration": float64(0), "filesize": float64(0)}
	if ps != nil {
		fps := ps.SPSFPS
		if fps == 0 {
			fps = t.host.ObservedFPS()
		}
		md["width"] = float64(ps.Width)
		md["height"] = float64(ps.Height)
		md["framerate"] = roundTo(fps, 100)
		md["videocodecid"] = float64(flv.VideoCodecAVC)
		if ps.FourCC != ([4]byte{}) {
			// E-RTMP: the FourCC as a number (FFmpeg's muxer, OBS).
			md["videocodecid"] = flv.FourCCNumber(ps.FourCC)
		}
		rate := float64(t.spec.VideoBitrate)
		if rate <= 0 {
			rate = t.host.ObservedVideoBitrate()
		}
		md["videodatarate"] = roundTo(rate/1000, 1)
	}
	if t.audio != nil {
		t.audio.AudioMetadata(md)
	}
	if user := t.host.UserMetadata(); user != nil {
		maps.Copy(md, user)
	}
	return md
}

// appendOnMetaData builds "@setDataFrame", "onMetaData", {values}.
func appendOnMetaData(dst []byte, values map[string]any) ([]byte, error) {
	dst, err := flv.AppendDataMessage(dst, "@setDataFrame", nil)
	if err != nil {
		return dst, err
	}
	return flv.AppendDataMessage(dst, "onMetaData", values)
}

func roundTo(v float64, scale float64) float64 {
	return float64(int64(v*scale+0.5)) / scale
}
