"""A small RTSP camera for the tests: serves an H.264 MP4 file on 127.0.0.1 only.

Runs under the SYSTEM python (``/usr/bin/python3``), which has Debian's GStreamer
bindings (see ``.ci/apt-packages.txt``); the project's venv does not. Every client that
sends PLAY gets the file from its start, paced in real time, like a camera:

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --mount /cam --file clip.mp4

Prints ``READY`` on stdout once it listens.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", default="/cam")
    parser.add_argument("--file", required=True, help="an MP4 holding one H.264 video stream")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")  # loopback only, never another address
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    location = args.file.replace("\\", "\\\\").replace('"', '\\"')
    factory.set_launch(f'( filesrc location="{location}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )')
    factory.set_shared(False)  # each client starts at the beginning of the file
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, loop.quit)
    print("READY", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
