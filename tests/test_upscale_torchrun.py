"""`torchrun --nproc_per_node 2 -m realsr_fast upscale`: two CPU ranks (gloo for the reports) split
the plan; the outputs equal one process's, each job is done once, a re-run resumes, and a bad file
on either rank makes rank 0 exit non-zero with one summary."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from realsr_fast.models.formats import save_safetensors
from realsr_fast.models.rrdbnet import RRDBNet

av = pytest.importorskip("av")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    torch.manual_seed(3)
    network = RRDBNet(nf=8, nb=1, gc=4).eval()
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_safetensors(path, network.state_dict(), network.config())
    return path


def realsr(*args: object, ranks: int = 0) -> subprocess.CompletedProcess:
    """`python -m realsr_fast upscale ARGS`, under torchrun with `ranks` processes when > 0."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    command = [*(launcher if ranks else [sys.executable]), "-m", "realsr_fast", "upscale", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # A session of its own, so that a hang kills torchrun's workers too, not only torchrun.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def make_clip(path: Path, count: int = 2) -> None:
    """A tiny H.264 clip of noise frames, 16 x 12."""
    rng = np.random.default_rng(len(path.name))
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = 16, 12, "yuv420p"
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))


def frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


@pytest.mark.slow
def test_two_ranks_split_the_images_resume_and_report_failures(tmp_path, tiny_model):
    rng = np.random.default_rng(0)
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    for i in range(7):
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(source / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(source / "sub" / "7.png")
    for name in ("a.mp4", "b.mp4"):  # one video for each rank
        make_clip(source / name)
    options = ["--model", tiny_model, "--device", "cpu", "--backend", "torch", "--recursive"]

    one = realsr(source, "-o", tmp_path / "one", *options)
    assert one.returncode == 0, one.stderr
    two = realsr(source, "-o", tmp_path / "two", *options, ranks=2)
    assert two.returncode == 0, two.stderr
    images = {name: data for name, data in files(tmp_path / "one").items() if name.endswith(".png")}
    assert {name: data for name, data in files(tmp_path / "two").items() if name.endswith(".png")} == images
    assert len(images) == 8
    for name in ("a.mp4", "b.mp4"):
        assert np.array_equal(frames(tmp_path / "two" / name), frames(tmp_path / "one" / name))
    # One summary (rank 0's), counting every rank's jobs once: none done twice, none skipped.
    assert two.stdout.count("images upscaled") == 1 and two.stdout.startswith("8 images upscaled")
    assert two.stdout.count("videos upscaled") == 1 and "2 videos upscaled (4 frames" in two.stdout
    assert "skipped" not in two.stdout

    for name in ("0.png", "5.png", "sub/7.png"):
        (tmp_path / "two" / name).unlink()
    (source / "bad.png").write_bytes(b"not an image")  # rank 0 or 1 gets it, depending on the plan
    again = realsr(source, "-o", tmp_path / "two", *options, ranks=2)
    assert again.returncode == 1, again.stderr
    summary = [line for line in again.stderr.splitlines() if "images upscaled" in line]
    assert len(summary) == 1 and summary[0].startswith("3 images upscaled") and "5 skipped" in summary[0], again.stderr
    assert "1 failed" in summary[0] and "bad.png: not an image" in again.stderr
    assert {name: data for name, data in files(tmp_path / "two").items() if name.endswith(".png")} == images


@pytest.mark.slow
def test_two_ranks_share_the_frames_of_one_video(tmp_path, tiny_model):
    """Fewer videos than ranks: both ranks upscale frames of the one video, rank 0 encodes; the
    output is the one-process output (lossless, so frame for frame), audio included."""
    source = tmp_path / "clip.mkv"
    make_clip(source, count=5)
    options = ["--model", tiny_model, "--device", "cpu", "--backend", "torch", "--codec", "ffv1", "--pix-fmt", "bgr0"]
    one = realsr(source, "-o", tmp_path / "one.mkv", *options)
    assert one.returncode == 0, one.stderr
    two = realsr(source, "-o", tmp_path / "two.mkv", *options, ranks=2)
    assert two.returncode == 0, two.stderr
    assert "1 video upscaled (5 frames" in two.stdout and two.stdout.count("upscaled") == 1
    assert np.array_equal(frames(tmp_path / "two.mkv"), frames(tmp_path / "one.mkv"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv", "one.mkv", "two.mkv"]
