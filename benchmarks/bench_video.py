"""Upscaling a video x4 on the CPU: `realsr upscale clip.mp4` (decode, the default Upscaler, libx264
encode, audio copied) vs the ncnn package frame by frame with the same PyAV decode and encode.

    python -m pytest benchmarks/bench_video.py --benchmark-json benchmarks/results/video_cpu.json
    python benchmarks/ratios.py benchmarks/results/video_cpu.json

The clip: 24 frames of 96 x 64 (a pan across the astronaut photo, so frames differ), 24 fps, H.264
yuv420p, with an AAC track. Frames per second = 24 / the time per round. Not in the `--quick` set
(benchmarks/floors.json has no case of it): a round is many seconds on a 2-core CPU.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from realsr_fast.inference.upscale_video import upscale_video
from realsr_fast.inference.upscaler import Upscaler
from realsr_fast.models import zoo

av = pytest.importorskip("av")
ncnn = pytest.importorskip("ncnn")
skimage_data = pytest.importorskip("skimage.data")

FRAMES, HEIGHT, WIDTH = 24, 64, 96
ROUNDS = dict(rounds=2, iterations=1, warmup_rounds=1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    photo = skimage_data.astronaut()
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        sound = out.add_stream("aac", rate=48000, layout="mono")
        for i in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(photo[100:164, 150 + 4 * i:246 + 4 * i]), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        tone = (np.sin(np.arange(48000) * 0.05) * 0.1).astype(np.float32)[None]
        for start in range(0, 48000, 1024):
            chunk = av.AudioFrame.from_ndarray(tone[:, start:start + 1024].copy(), format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = 48000, start
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    return path


def ncnn_frame_by_frame(net, source: Path, target: Path) -> int:
    """The baseline: PyAV decode -> the ncnn package on each frame -> PyAV libx264 encode (video only)."""
    with av.open(str(source)) as container, av.open(str(target), "w") as out:
        stream = container.streams.video[0]
        encoder = out.add_stream("libx264", rate=stream.average_rate)
        encoder.width, encoder.height, encoder.pix_fmt = 4 * WIDTH, 4 * HEIGHT, "yuv420p"
        frames = 0
        for frame in container.decode(stream):
            chw = frame.to_ndarray(format="rgb24").transpose(2, 0, 1).astype(np.float32) / 255
            extractor = net.create_extractor()
            extractor.input("data", ncnn.Mat(np.ascontiguousarray(chw)))
            _, result = extractor.extract("output")
            rgb = (np.clip(np.array(result), 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)
            new = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            new.pts, new.time_base = frame.pts, frame.time_base
            out.mux(encoder.encode(new))
            frames += 1
        out.mux(encoder.encode(None))
    return frames


@pytest.mark.benchmark(group=f"video {WIDTH}x{HEIGHT} x{FRAMES} frames x4 (cpu)")
def test_video_ours(benchmark, clip, tmp_path) -> None:
    """`realsr upscale clip.mp4 -o out.mp4 --device cpu`: the default backend (auto), batch 1."""
    upscaler = Upscaler("df2k", device="cpu", backend="auto")
    frames = benchmark.pedantic(upscale_video, args=(upscaler, clip, tmp_path / "out.mp4"),
                                kwargs=dict(progress=False), **ROUNDS)
    assert frames == FRAMES
    benchmark.extra_info["frames"] = FRAMES


@pytest.mark.benchmark(group=f"video {WIDTH}x{HEIGHT} x{FRAMES} frames x4 (cpu)")
def test_video_ncnn_package(benchmark, clip, tmp_path) -> None:
    param, weights = zoo.package_files(zoo.MODELS["df2k"])
    net = ncnn.Net()
    net.opt.num_threads = 2
    net.load_param(str(param))
    net.load_model(str(weights))
    frames = benchmark.pedantic(ncnn_frame_by_frame, args=(net, clip, tmp_path / "ncnn.mp4"), **ROUNDS)
    assert frames == FRAMES
    benchmark.extra_info["frames"] = FRAMES
