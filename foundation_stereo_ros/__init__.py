"""FoundationStereo for ROS 2: dense metric depth from a rectified stereo camera."""

__version__ = '0.1.0'
