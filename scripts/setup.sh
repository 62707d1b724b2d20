#!/usr/bin/env bash
# One command for a fresh machine: virtual environment, install, colcon build, then the demo
# on the bundled generated scene (SGBM backend: no model weights needed).
# Usage: ./scripts/setup.sh [--no-demo]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and alone, so nothing else can pull a different (multi-GB) build.
.venv/bin/python -m pip install --quiet "$(grep -E '^torch==' requirements.txt)"
.venv/bin/python -m pip install --quiet -r requirements.txt
# The fleet tool's optional Ray (its tests run in CI).
.venv/bin/python -m pip install --quiet -r requirements-fleet.txt

# shellcheck disable=SC1091
source .venv/bin/activate
colcon build --base-paths . --symlink-install --event-handlers console_cohesion- >/dev/null
echo "setup: built into install/ (source install/setup.bash to use the package)"

if [ "${1:-}" != "--no-demo" ]; then
  set +u  # colcon's setup scripts read unset variables
  # shellcheck disable=SC1091
  source install/setup.bash
  set -u
  python -m foundation_stereo_ros.demo --backend sgbm --out out/demo
fi
