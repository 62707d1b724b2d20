#!/usr/bin/env bash
# Runs the whole test suite through colcon (pytest underneath), with DDS kept on this machine:
# an isolated network namespace where the machine allows it, localhost discovery and a
# per-run ROS_DOMAIN_ID. Fails when any test fails. Run ./scripts/setup.sh --no-demo first.
set -euo pipefail
cd "$(dirname "$0")/.."

export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}

if [ -z "${FSR_NETNS:-}" ] && unshare -n true 2>/dev/null; then
  # Re-run this script in a fresh network namespace with only loopback up.
  exec unshare -n env FSR_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
[ -n "${FSR_NETNS:-}" ] && echo "test: isolated network namespace (loopback only)"
echo "test: ROS_DOMAIN_ID=$ROS_DOMAIN_ID ROS_AUTOMATIC_DISCOVERY_RANGE=$ROS_AUTOMATIC_DISCOVERY_RANGE"

# shellcheck disable=SC1091
source .venv/bin/activate
colcon build --base-paths . --symlink-install --event-handlers console_cohesion- >/dev/null
colcon test --base-paths . --event-handlers console_direct+ --return-code-on-test-failure \
  --pytest-args -ra "$@"
colcon test-result --verbose
