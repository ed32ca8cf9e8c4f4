"""Training: orchestration, the loop, trunk cache, resume checkpoints, grids."""
