"""Training: configuration, the trainer, checkpoints."""
