"""The package's Python log records reach the node's ROS logger (warm-up and compile lines)."""
import logging

from foundation_stereo_ros.ros.log_bridge import forward_package_logs, stop_forwarding


class FakeRosLogger:
    """Records calls the way an rclpy logger receives them."""

    def __init__(self):
        self.calls = []

    def info(self, message):
        self.calls.append(('info', message))

    def warning(self, message):
        self.calls.append(('warning', message))

    def error(self, message):
        self.calls.append(('error', message))


def test_records_reach_the_ros_logger_at_their_severity_until_removed():
    ros = FakeRosLogger()
    handler = forward_package_logs(ros)
    backend_log = logging.getLogger('foundation_stereo_ros.backends.foundation_stereo')
    try:
        backend_log.info('warmed up for %dx%d pairs', 640, 480)
        backend_log.warning('slow')
        backend_log.error('broken')
        backend_log.debug('not forwarded')
        logging.getLogger('somebody_else').warning('not ours')
    finally:
        stop_forwarding(handler)
    backend_log.info('after removal')
    assert ros.calls == [('info', 'warmed up for 640x480 pairs'), ('warning', 'slow'),
                         ('error', 'broken')]
