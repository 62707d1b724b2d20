#!/usr/bin/env bash
# The unit tests (no DDS, no linters) against the oldest numpy and OpenCV that install on this
# Python, everything else as pinned in requirements.txt: the code must keep to APIs that old
# (Ubuntu 22.04 / ROS 2 Humble ship numpy 1.21 and OpenCV 4.5.4).
#   numpy 1.23.3: 1.23.2 is the first numpy with Python 3.11 wheels, but onnx needs ml_dtypes,
#     which needs numpy >= 1.23.3 on Python 3.11.
#   opencv-python-headless 4.5.5.64: the oldest OpenCV 4 wheel for Python 3.11 (abi3); 4.x is
#     what cv_bridge is built against (see requirements.txt).
# Usage: ./scripts/test_oldest_deps.sh [pytest arguments]
# The virtual environment goes to $OLDEST_DEPS_VENV (default: a folder under ${TMPDIR:-/tmp}).
set -euo pipefail
cd "$(dirname "$0")/.."

OLDEST_NUMPY=1.23.3
OLDEST_OPENCV=4.5.5.64
PYTHON=${PYTHON:-python3}
VENV=${OLDEST_DEPS_VENV:-${TMPDIR:-/tmp}/foundation_stereo_ros_oldest_deps}
start=$(date +%s)

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first and alone (as setup.sh does), then the rest with numpy and OpenCV replaced.
"$VENV/bin/python" -m pip install --quiet "$(grep -E '^torch==' requirements.txt)"
# matplotlib (the sweep tool's plot) >= 3.10 and scipy (the denoising tests' k-d tree) >= 1.14
# need a newer numpy: the newest of each that takes it.
grep -v -E '^(numpy|opencv-python-headless|matplotlib|scipy)==' requirements.txt \
  > "$VENV/requirements-oldest.txt"
printf 'numpy==%s\nopencv-python-headless==%s\nmatplotlib<3.10\nscipy<1.14\n' "$OLDEST_NUMPY" \
  "$OLDEST_OPENCV" >> "$VENV/requirements-oldest.txt"
"$VENV/bin/python" -m pip install --quiet -r "$VENV/requirements-oldest.txt"
"$VENV/bin/python" - "$OLDEST_NUMPY" "$OLDEST_OPENCV" <<'EOF'
import sys

import cv2
import numpy

want_numpy, want_cv = sys.argv[1], sys.argv[2].rsplit('.', 1)[0]
if (numpy.__version__, cv2.__version__) != (want_numpy, want_cv):
    sys.exit(f'expected numpy {want_numpy} and OpenCV {want_cv}, got {numpy.__version__} and '
             f'{cv2.__version__}')
print(f'test_oldest_deps: numpy {numpy.__version__}, OpenCV {cv2.__version__}, '
      f'Python {sys.version.split()[0]}')
EOF
installed=$(date +%s)

# No DDS here (the node's end-to-end tests run in test.sh), nor the installed entry points
# (they run the colcon install's python, tested in test.sh), nor the speed checks (compile,
# gpu_check) and the fleet tool on Ray (not about numpy/OpenCV APIs; its extra is not
# installed here); keep any stray traffic local.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}
PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  -m 'not linter and not slow' \
  --ignore=test/test_node_e2e.py --ignore=test/test_node_inputs_e2e.py \
  --ignore=test/test_synthetic_camera.py --ignore=test/test_gpu_check.py \
  --ignore=test/test_entry_points.py \
  --ignore=test/test_fleet.py \
  "$@" test
echo "test_oldest_deps: install $(( installed - start )) s, tests $(( $(date +%s) - installed )) s"
