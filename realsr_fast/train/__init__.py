"""Training: config presets, losses, the trainer, checkpoints and torchrun/DDP helpers (REFERENCE.md §7)."""
