"""Training and evaluation loops, losses, EMA, checkpoints, distributed set-up, logging."""
