"""FoundationStereo network in plain PyTorch (no ROS imports)."""
