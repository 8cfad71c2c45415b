#!/usr/bin/env bash
# Runs the whole test suite. Installs what the tests need when it is missing: the venv with
# the test extras ([dev]: diffusion, eval, pytest, ruff; plus the opt-in AGPL [yolo], whose
# --persons path is tested, in this test environment only) and the real RTSP peer the
# live-stream tests need (Debian's gst-rtsp-server, listed in .ci/apt-packages.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[dev,yolo]'
if ! /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $(cat .ci/apt-packages.txt) >/dev/null
fi
export HF_HUB_OFFLINE=1 CAMSTREAM_REQUIRE_RTSP=1
exec .venv/bin/python -m pytest -q "$@"
