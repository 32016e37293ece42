"""KernelGAN kernel estimation: faithful to the official code, collapsed and batched."""
