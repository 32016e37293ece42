"""Torchrun ranks sharing the frames of one video (`inference.upscale_video.upscale_videos`, when
there are fewer videos than ranks): each upscales its batches, rank 0 encodes them all."""
from __future__ import annotations

import numpy as np


class FrameShare:
    """The ranks of torchrun sharing one video: batch `i` of frames is upscaled by rank `i % world`;
    the other ranks send their upscaled frames to rank 0 (gloo, raw bytes), which encodes them in
    order. Every rank decodes the whole video (cheap next to the network), so all agree on the
    frames and their batches."""

    def __init__(self, rank: int, world: int) -> None:
        from realsr_fast.inference.ranks import process_group

        self.rank, self.world = rank, world
        self.group = process_group()

    def owner(self, batch: int) -> int:
        return batch % self.world

    def from_rank0(self, value: object) -> object:
        """Rank 0's `value`, on every rank."""
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def send(self, images: list[np.ndarray]) -> None:
        import torch
        import torch.distributed as dist

        for image in images:
            dist.send(torch.from_numpy(np.ascontiguousarray(image).reshape(-1).view(np.uint8)), dst=0)

    def receive(self, source: int, shapes: list[tuple[int, int, int]], dtype: np.dtype) -> list[np.ndarray]:
        import torch
        import torch.distributed as dist

        images = []
        for shape in shapes:
            buffer = torch.empty(int(np.prod(shape)) * np.dtype(dtype).itemsize, dtype=torch.uint8)
            dist.recv(buffer, src=source)
            images.append(buffer.numpy().view(dtype).reshape(shape))
        return images
