"""Generated stereo scenes with exact ground truth, and a ROS camera node that publishes them."""
