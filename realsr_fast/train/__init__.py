"""Training: config presets, losses, the trainer, checkpoints and torchrun/DDP helpers (docs/METHOD.md §7)."""

#: The packaged fine-tuning preset of each `realsr adapt --mode` (adapt.yaml: L1 alone, CPU sizes;
#: adapt_gan.yaml: the paper's L1 + VGG + RaGAN). Here, in the light package, so that `--help` reads it.
FINE_TUNE_PRESETS = {"psnr": "adapt.yaml", "gan": "adapt_gan.yaml"}
