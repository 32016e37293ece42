"""KernelGAN (Bell-Kligler et al., NeurIPS 2019), faithful to the official code, collapsed and batched.

Light (no torch): the command line's `--bicubic-weight` reads the weights below.
"""

LAMBDA_BICUBIC_START = 5.0  # upstream KernelGAN (learner.py)
LAMBDA_BICUBIC_START_REALSR = 20.0  # the copy of KernelGAN inside Tencent/Real-SR (codes/preprocess)
