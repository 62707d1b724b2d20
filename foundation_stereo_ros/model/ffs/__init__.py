"""Fast-FoundationStereo (FFS / C-FFS) checkpoints, loaded without running the file."""
