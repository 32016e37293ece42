"""KernelGAN kernel estimation: faithful to the official code, collapsed and batched."""

#: KernelGAN iterations per image, the official setting (docs/METHOD.md). Here, in
#: the light package `__init__`, so that `realsr kernels/adapt/demo --help` show it without importing torch.
ITERATIONS = 3000
