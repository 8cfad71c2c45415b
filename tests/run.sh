#!/usr/bin/env bash
# Runs the whole test suite. Installs the real RTSP peer the live-stream tests need
# (Debian's gst-rtsp-server, listed in .ci/apt-packages.txt) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $(cat .ci/apt-packages.txt) >/dev/null
fi
export HF_HUB_OFFLINE=1 CAMSTREAM_REQUIRE_RTSP=1
exec .venv/bin/python -m pytest -q "$@"
