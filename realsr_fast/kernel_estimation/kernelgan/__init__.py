"""KernelGAN (Bell-Kligler et al., NeurIPS 2019), faithful to the official code, collapsed and batched."""
