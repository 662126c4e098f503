#!/usr/bin/env bash
# Regenerates the committed test media. Needs ffmpeg with libx264, libopus,
# libvpx-vp9, libaom-av1 and libx265
# (Debian's ffmpeg package). The outputs are committed, so tests and CI never
# run this; rerun it only when the material has to change.
set -euo pipefail
cd "$(dirname "$0")"

# video.h264: Annex B H.264, constrained baseline level 3.1, 1280x720, 30 fps,
# 150 frames (5 s), IDRs at frames 0 and 135 only (4.5 s apart, longer than
# the 4 s an RTMP ingest tolerates, so the gateway has to ask for keyframes),
# every frame in 4 slices, ~1 Mbit/s, no B-frames, SPS/PPS repeated before
# every IDR, no AUDs.
ffmpeg -hide_banner -loglevel error -y \
	-f lavfi -i testsrc2=size=1280x720:rate=30 \
	-frames:v 150 -an \
	-c:v libx264 -profile:v baseline -level:v 3.1 -pix_fmt yuv420p \
	-preset medium -bf 0 -threads 1 \
	-b:v 1M -maxrate 1.2M -bufsize 1M \
	-x264-params keyint=135:min-keyint=135:scenecut=0:slices=4:repeat-headers=1:aud=0 \
	-bsf:v h264_mp4toannexb \
	-fflags +bitexact -flags:v +bitexact \
	-f h264 video.h264

# video-2500k.h264: what cmd/loadgen publishes by default, shaped like a
# browser's camera stream at the issue's load point: constrained baseline
# 1280x720, 30 fps, ~2.5 Mbit/s, one slice per frame, an IDR every 2 s,
# 150 frames (5 s). testsrc2 alone compresses far below 2.5 Mbit/s, so
# temporal noise is added to make the encoder spend the bits.
ffmpeg -hide_banner -loglevel error -y \
	-f lavfi -i testsrc2=size=1280x720:rate=30 \
	-frames:v 150 -an -vf noise=alls=12:allf=t \
	-c:v libx264 -profile:v baseline -level:v 3.1 -pix_fmt yuv420p \
	-preset medium -bf 0 -threads 1 \
	-b:v 2500k -maxrate 3000k -bufsize 2500k \
	-x264-params keyint=60:min-keyint=60:scenecut=0:repeat-headers=1:aud=0 \
	-bsf:v h264_mp4toannexb \
	-fflags +bitexact -flags:v +bitexact \
	-f h264 video-2500k.h264

# audio.ogg: Opus, 48 kHz stereo (440 Hz left, 660 Hz right), 20 ms frames,
# 5 s, 64 kbit/s.
ffmpeg -hide_banner -loglevel error -y \
	-f lavfi -i 'aevalsrc=0.3*sin(2*PI*440*t)|0.3*sin(2*PI*660*t):s=48000:d=5' \
	-c:a libopus -b:a 64k -frame_duration 20 -application audio \
	-fflags +bitexact -flags:a +bitexact \
	-f ogg audio.ogg

# video-360p.h264 and video-180p.h264: the lower layers of a simulcast
# publisher (with video.h264 on top): testsrc2 at 640x360 ~500 kbit/s and
# 320x180 ~150 kbit/s, constrained baseline, 30 fps, 150 frames, an IDR
# every 60 frames (2 s), SPS+PPS before each IDR, one slice per frame.
for layer in 640x360:500k:video-360p 320x180:150k:video-180p; do
	IFS=: read -r size rate out <<<"$layer"
	ffmpeg -hide_banner -loglevel error -y \
		-f lavfi -i "testsrc2=size=$size:rate=30" \
		-frames:v 150 -an \
		-c:v libx264 -profile:v baseline -level:v 3.0 -pix_fmt yuv420p \
		-preset medium -bf 0 -threads 1 \
		-b:v "$rate" -maxrate "$rate" -bufsize "$rate" \
		-x264-params keyint=60:min-keyint=60:scenecut=0:repeat-headers=1:aud=0 \
		-bsf:v h264_mp4toannexb \
		-fflags +bitexact -flags:v +bitexact \
		-f h264 "$out.h264"
done

# video-vp9.ivf, video-av1.ivf, video-hevc.h265: the E-RTMP codecs (issue 15)
# as WebRTC encoders make them: testsrc2 320x180, 30 fps, 150 frames (5 s),
# ~150 kbit/s, a key frame every 60 frames (2 s), no frames held back for
# reordering (VP9 without alt-ref, H.265 without B-frames, AV1 realtime).
ffmpeg -hide_banner -loglevel error -y \
	-f lavfi -i testsrc2=size=320x180:rate=30 -frames:v 150 -an \
	-c:v libvpx-vp9 -deadline realtime -cpu-used 8 -row-mt 0 -threads 1 \
	-auto-alt-ref 0 -lag-in-frames 0 -g 60 -keyint_min 60 -b:v 150k \
	-fflags +bitexact -flags:v +bitexact -f ivf video-vp9.ivf
ffmpeg -hide_banner -loglevel error -y \
	-f lavfi -i testsrc2=size=320x180:rate=30 -frames:v 150 -an \
	-c:v libaom-av1 -usage realtime -cpu-used 8 -threads 1 -lag-in-frames 0 \
	-g 60 -keyint_min 60 -b:v 150k \
	-fflags +bitexact -flags:v +bitexact -f ivf video-av1.ivf
ffmpeg -hide_banner -loglevel error -y \
	-f lavfi -i testsrc2=size=320x180:rate=30 -frames:v 150 -an \
	-c:v libx265 -preset fast -b:v 150k \
	-x265-params log-level=none:keyint=60:min-keyint=60:scenecut=0:bframes=0:repeat-headers=1:pools=1:frame-threads=1 \
	-bsf:v hevc_mp4toannexb -fflags +bitexact -flags:v +bitexact -f hevc video-hevc.h265
