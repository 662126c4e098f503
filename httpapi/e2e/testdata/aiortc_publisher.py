#!/usr/bin/python3
"""An aiortc publisher for castbridge's end-to-end tests.

Writes its offer (aiortc gathers before it offers) as one JSON line
{"sdp": ...} to stdout, reads the answer as one JSON line {"sdp": ...} from
stdin, then sends 352x288 (--width, --height) video at 30 fps (a moving bar, encoded by aiortc's
H.264 or VP8 encoder, whichever the answer picks) and a 440 Hz tone as Opus
until stdin closes or --seconds pass. ICE runs on 127.0.0.1 only.
"""
import argparse
import asyncio
import fractions
import json
import math
import sys
import time

import aioice.ice
import numpy
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from av import AudioFrame, VideoFrame

WIDTH, HEIGHT = 352, 288

# Loopback only: aioice leaves 127.0.0.1 out of its host candidates.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []


class Bars(VideoStreamTrack):
    """A moving white bar on grey, at aiortc's 30 fps clock."""

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        img = numpy.full((HEIGHT, WIDTH, 3), 96, dtype=numpy.uint8)
        x = (pts // 3000 * 8) % WIDTH
        img[:, x:x + 16] = 255
        frame = VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


class Tone(AudioStreamTrack):
    """A 440 Hz tone in 20 ms frames of 48 kHz mono."""

    def __init__(self):
        super().__init__()
        self.samples = 0
        self.start = None

    async def recv(self):
        n = 960
        if self.start is None:
            self.start = time.time()
        wait = self.start + self.samples / 48000 - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (numpy.arange(self.samples, self.samples + n) / 48000.0)
        pcm = (numpy.sin(2 * math.pi * 440 * t) * 8000).astype(numpy.int16).reshape(1, -1)
        frame = AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self.samples
        frame.time_base = fractions.Fraction(1, 48000)
        self.samples += n
        return frame


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-video", action="store_true")
    ap.add_argument("--no-audio", action="store_true")
    ap.add_argument("--width", type=int, default=352)
    ap.add_argument("--height", type=int, default=288)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()

    global WIDTH, HEIGHT
    WIDTH, HEIGHT = args.width, args.height
    pc = RTCPeerConnection()
    if not args.no_video:
        pc.addTransceiver(Bars(), direction="sendonly")
    if not args.no_audio:
        pc.addTransceiver(Tone(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    print(json.dumps({"sdp": pc.localDescription.sdp}), flush=True)

    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if not line:
        await pc.close()
        return
    await pc.setRemoteDescription(RTCSessionDescription(sdp=json.loads(line)["sdp"], type="answer"))
    eof = loop.run_in_executor(None, sys.stdin.read)
    try:
        await asyncio.wait_for(eof, timeout=args.seconds)
    except asyncio.TimeoutError:
        pass
    await pc.close()


if __name__ == "__main__":
    asyncio.run(main())
