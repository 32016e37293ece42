"""Inference: one `Upscaler` over tile runners (torch, ONNX Runtime, TensorRT) and the folder job.
Light on purpose: the submodules import torch."""
