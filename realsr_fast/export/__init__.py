"""Deployment: ONNX export (fp32, or fp16 with fp32 I/O) and TensorRT engine builds.

- `precision`: which parts of an RRDBNet must stay fp32 in an fp16 graph (measured per model);
- `onnx_export`: `export_onnx(model, path, precision=...)` with metadata and graph checks;
- `tensorrt_build`: optimisation profile, JSON sidecar, `build_engine` (needs `tensorrt`).

Heavy packages (onnx, tensorrt) are imported inside the functions that need them.
"""
from __future__ import annotations
