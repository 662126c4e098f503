#!/usr/bin/python3
"""A GStreamer webrtcbin publisher for castbridge's end-to-end tests.

Writes its offer (ICE gathering complete) as one JSON line {"sdp": ...} to
stdout, reads the answer as one JSON line {"sdp": ...} from stdin, then sends
x264enc H.264 (320x240, 30 fps) and Opus until stdin closes or --seconds pass.

--default-caps offers H.264 from transceiver caps with packetization-mode=1
and nothing else (no profile-level-id), as webrtcbin does when the offer is
made before the encoder has negotiated; otherwise the offer comes from the
linked encoder's caps.
"""
import argparse
import json
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

VIDEO = ("videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 "
         "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! rtph264pay config-interval=-1 "
         "! capsfilter caps=application/x-rtp,media=video,encoding-name=H264,payload=96")
AUDIO = ("audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample ! opusenc "
         "! rtpopuspay ! capsfilter caps=application/x-rtp,media=audio,encoding-name=OPUS,payload=97")
VIDEO_CAPS = "application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000,packetization-mode=(string)1"
AUDIO_CAPS = "application/x-rtp,media=audio,encoding-name=OPUS,payload=97,clock-rate=48000,encoding-params=(string)2"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle-policy", default="max-bundle")
    ap.add_argument("--no-video", action="store_true")
    ap.add_argument("--no-audio", action="store_true")
    ap.add_argument("--default-caps", action="store_true")
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    Gst.init(None)

    branches = []
    if not args.no_video:
        branches.append((VIDEO, VIDEO_CAPS))
    if not args.no_audio:
        branches.append((AUDIO, AUDIO_CAPS))
    pipe = Gst.Pipeline.new("publisher")
    webrtc = Gst.ElementFactory.make("webrtcbin", "w")
    webrtc.set_property("bundle-policy", args.bundle_policy)
    pipe.add(webrtc)
    loop = GLib.MainLoop()
    state = {"offered": False}

    def fail(msg):
        print("gst_publisher: " + msg, file=sys.stderr)
        loop.quit()

    def link(desc, idx, caps=None):
        b = Gst.parse_bin_from_description(desc, True)
        pipe.add(b)
        pad = webrtc.request_pad_simple("sink_%u")
        if caps is not None:
            trans = pad.get_property("transceiver")
            trans.set_property("codec-preferences", Gst.Caps.from_string(caps))
            trans.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        if b.get_static_pad("src").link(pad) != Gst.PadLinkReturn.OK:
            fail("cannot link branch %d" % idx)
        b.sync_state_with_parent()

    def on_offer(promise, _el, _data):
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply else None
        if offer is None:
            state["offered"] = False  # no caps yet: the next negotiation-needed retries
            return
        webrtc.emit("set-local-description", offer, Gst.Promise.new())

    def negotiate(*_):
        if state["offered"]:
            return
        state["offered"] = True
        webrtc.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, webrtc, None))

    def on_gathering(el, _pspec):
        if el.get_property("ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            return
        if state.get("sent"):
            return
        state["sent"] = True
        print(json.dumps({"sdp": el.get_property("local-description").sdp.as_text()}), flush=True)
        threading.Thread(target=read_answer, daemon=True).start()

    def read_answer():
        line = sys.stdin.readline()
        if not line:
            GLib.idle_add(loop.quit)
            return
        GLib.idle_add(apply_answer, json.loads(line)["sdp"])
        sys.stdin.read()  # until the test closes stdin
        GLib.idle_add(loop.quit)

    def apply_answer(sdp_text):
        res, msg = GstSdp.SDPMessage.new_from_text(sdp_text)
        if res != GstSdp.SDPResult.OK:
            fail("cannot parse answer")
            return False
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        webrtc.emit("set-remote-description", answer, Gst.Promise.new())
        if args.default_caps:
            pipe.set_state(Gst.State.PLAYING)
        return False

    webrtc.connect("notify::ice-gathering-state", on_gathering)
    if args.default_caps:
        for i, (desc, caps) in enumerate(branches):
            link(desc, i, caps)
        # The offer is made before any caps flow: PLAYING after the answer.
        pipe.set_state(Gst.State.READY)
        GLib.idle_add(negotiate)
    else:
        webrtc.connect("on-negotiation-needed", negotiate)
        for i, (desc, _) in enumerate(branches):
            link(desc, i)
        pipe.set_state(Gst.State.PLAYING)

    bus = pipe.get_bus()
    bus.add_signal_watch()
    bus.connect("message::error", lambda _b, m: fail("error: %s" % (m.parse_error()[0].message,)))
    GLib.timeout_add(int(args.seconds * 1000), loop.quit)
    loop.run()
    pipe.set_state(Gst.State.NULL)


if __name__ == "__main__":
    main()
