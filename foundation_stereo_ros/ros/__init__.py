"""The ROS 2 glue: nodes, parameters, message conversions, synchronised input, diagnostics.

The only subpackage that imports rclpy or ROS message packages. It holds wiring, no maths:
the stereo maths is the pure pipeline one level up (``pipeline``, ``camera``, ``geometry``,
``rectification``, ``sync``), which runs from PyPI wheels and from an apt install alike.
"""
