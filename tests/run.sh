#!/usr/bin/env bash
# Runs the tests. Installs what they need when it is missing: the venv with the test
# extras ([dev]: diffusion, eval, ray, light, docs, pytest, ruff; plus the opt-in AGPL
# [yolo], whose --persons path is tested, in this test environment only) and the real
# RTSP peer the live-stream tests need (Debian's gst-rtsp-server, listed in
# .ci/apt-packages.txt).
#
#   bash tests/run.sh                 the default tier: unit and short end-to-end tests (under
#                                     10 minutes on 2 cores); tests marked `full` are left out
#   bash tests/run.sh --full          every test, the long ones too (real clips end to end,
#                                     training, clusters)
#   bash tests/run.sh --full -m full  the long ones only (CI runs them after the default tier)
# Any other argument goes to pytest (a file, -k NAME, -x, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
tier=(-m "not full")
if [ "${1:-}" = "--full" ]; then
  shift
  tier=()
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[dev,yolo]'
if ! /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $(cat .ci/apt-packages.txt) >/dev/null
fi
export HF_HUB_OFFLINE=1 CAMSTREAM_REQUIRE_RTSP=1
exec .venv/bin/python -m pytest -q "${tier[@]}" "$@"
