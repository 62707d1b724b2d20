#!/usr/bin/env bash
# The node's end-to-end DDS tests once more against ROS 2 Kilted (rclpy and messages from the
# ros-kilted-* PyPI wheels), everything else as pinned in requirements.txt. No colcon and no
# ament linters here: the tests run straight under pytest, and the linters run in test.sh.
# Usage: ./scripts/test_kilted.sh [pytest arguments]
# The virtual environment goes to $KILTED_VENV (default: a folder under ${TMPDIR:-/tmp}).
set -euo pipefail
cd "$(dirname "$0")/.."

# Kilted's versions of the ros-jazzy-* lines of requirements.txt (same extras).
KILTED_RCLPY=9.1.2
KILTED_MSGS=5.5.1   # sensor_msgs, stereo_msgs, std_msgs, diagnostic_msgs (common_interfaces)
PYTHON=${PYTHON:-python3}
VENV=${KILTED_VENV:-${TMPDIR:-/tmp}/foundation_stereo_ros_kilted}

export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}
# pip needs the network: install first, then re-run this script for the tests in a fresh
# network namespace with only loopback up where the machine allows it (as test.sh does).
if [ "${FSR_KILTED_STAGE:-install}" = install ]; then
  start=$(date +%s)
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # torch first and alone (as setup.sh does), then the rest with the Jazzy lines replaced.
  "$VENV/bin/python" -m pip install --quiet "$(grep -E '^torch==' requirements.txt)"
  grep -v -E '^(ros-jazzy-ament-[a-z0-9-]+|colcon-common-extensions)==' requirements.txt \
    | sed -E -e "s/^ros-jazzy-rclpy(\[[^]]*\])?==.*/ros-kilted-rclpy\1==$KILTED_RCLPY/" \
        -e "s/^ros-jazzy-([a-z-]+-msgs)==.*/ros-kilted-\1==$KILTED_MSGS/" \
    > "$VENV/requirements-kilted.txt"
  if grep -q '^ros-jazzy-' "$VENV/requirements-kilted.txt"; then
    echo "test_kilted: no Kilted version for: $(grep '^ros-jazzy-' "$VENV/requirements-kilted.txt")" >&2
    exit 1
  fi
  "$VENV/bin/python" -m pip install --quiet -r "$VENV/requirements-kilted.txt"
  "$VENV/bin/python" - "$KILTED_RCLPY" <<'EOF'
import sys
from importlib.metadata import version

want = sys.argv[1]
got = version('ros-kilted-rclpy')
if got != want:
    sys.exit(f'expected ros-kilted-rclpy {want}, got {got}')
import rclpy  # noqa: E402
print(f'test_kilted: ROS 2 kilted, rclpy {version("ros-rclpy")} ({rclpy.__file__}), '
      f'Python {sys.version.split()[0]}')
EOF
  installed=$(date +%s)
  export FSR_KILTED_STAGE=test FSR_KILTED_INSTALL_S=$(( installed - start ))
  if [ -z "${FSR_NETNS:-}" ] && unshare -n true 2>/dev/null; then
    exec unshare -n env FSR_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
  fi
fi

installed=$(date +%s)
[ -n "${FSR_NETNS:-}" ] && echo "test_kilted: isolated network namespace (loopback only)"
echo "test_kilted: ROS_DOMAIN_ID=$ROS_DOMAIN_ID ROS_AUTOMATIC_DISCOVERY_RANGE=$ROS_AUTOMATIC_DISCOVERY_RANGE"
PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} "$VENV/bin/python" -m pytest -q -p no:cacheprovider -ra \
  test/test_node_e2e.py test/test_node_inputs_e2e.py test/test_synthetic_camera.py \
  test/test_cameras_e2e.py test/test_lifecycle_e2e.py test/test_trust_e2e.py "$@"
echo "test_kilted: install ${FSR_KILTED_INSTALL_S:-0} s, tests $(( $(date +%s) - installed )) s"
