"""Kernel estimation: each photo's blur kernel, by KernelGAN, the spectral estimator or the blur families."""

#: KernelGAN iterations per image, the official setting (docs/METHOD.md). Here, in the light package
#: `__init__`, so that `realsr kernels/adapt/demo --help` show it without importing torch.
ITERATIONS = 3000
