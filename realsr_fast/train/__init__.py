"""Training: config presets, losses, the trainer, checkpoints and torchrun/DDP helpers (docs/METHOD.md §7)."""
