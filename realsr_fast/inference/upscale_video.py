"""Upscale video files: decode, upscale and encode as a stream; copy audio and subtitles untouched.

`realsr upscale clip.mp4 -o clip_x4.mp4` (and videos inside input folders) comes here through
`upscale_videos`; PyAV (`pip install 'realsr_fast[video]'`) does the decoding, encoding and muxing.

What a video job keeps and changes:
- frames: each decoded frame (as RGB, 8 bits, or 16 bits when the input has more than 8) goes
  through `Upscaler.upscale_image`, the function `realsr upscale` runs on a photo, so a frame comes
  out exactly as that frame saved as a PNG would; on a GPU several frames go to the network as one
  `(B, 3, H, W)` batch (`VideoOptions.batch`); `inference.video_stream` does the streams;
- time: the same frame count, frame rate and timestamps (every frame keeps its pts in the input's
  time base; with --start the timestamps are shifted so the output starts at 0);
- other streams: audio and subtitle packets are remuxed byte for byte (no re-encode); data and
  attachment streams are left out;
- rotation: the display matrix (the phone's "rotate" tag) is kept as it is, not applied: pixels
  are upscaled as stored and players turn them as they turned the input;
- colour: frames are converted to RGB with the input's matrix and range and back to YUV with the
  same, and the output is tagged with the input's colour properties;
- codec: `--codec` (default libx264; VP9 for .webm), `--crf`, `--pix-fmt` (default: the input's
  when the encoder takes it, so 10-bit stays 10-bit with libx264 / libx265 / VP9, else yuv420p).

Memory: frames flow decoder -> batch -> network -> encoder, so a run holds a batch of frames plus
what the encoder buffers (its look-ahead), whatever the length of the video.

Atomic: the output is written to a hidden temporary file in the output's folder and renamed at
the end; Ctrl-C, SIGTERM (torchrun stopping the ranks) or an error deletes it, so an interrupted
run never leaves a file under the final name (and a re-run does that video again).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from realsr_fast.batch import BatchReport
from realsr_fast.errors import RealSRError
from realsr_fast.inference.backends import UpscalerSettings
from realsr_fast.inference.frame_share import FrameShare
from realsr_fast.inference.video_stream import Transcoder, VideoOptions
from realsr_fast.io import IMAGE_SUFFIXES, atomic_path, list_images
from realsr_fast.optional import import_optional

if TYPE_CHECKING:
    from realsr_fast.inference.upscaler import Upscaler

#: File suffixes treated as videos (lower case), and the FFmpeg muxer each is written with.
CONTAINER_FORMATS: dict[str, str] = {
    ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi",
}
VIDEO_SUFFIXES: frozenset[str] = frozenset(CONTAINER_FORMATS)

@dataclass(frozen=True)
class VideoJob:
    """One input video and the output file it becomes."""

    source: Path
    target: Path


@dataclass
class VideoReport(BatchReport):
    """What a video batch did (`done`: outputs written), its frame count and time."""

    verb: str = "upscaled"
    frames: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        count = len(self.done)
        line = f"{count} video{'' if count == 1 else 's'} upscaled ({self.frames} frames"
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        line += f", {rate:.2f} frames/s) in {self.seconds:.1f} s"
        if self.skipped:
            line += f", {len(self.skipped)} skipped (outputs exist; --overwrite redoes them)"
        if self.failed:
            line += f", {len(self.failed)} failed:" + "".join(f"\n  {message}" for _, message in self.failed)
        return line


def import_av():
    """The PyAV module, or RealSRError naming the `video` extra."""
    return import_optional("av", "video", "upscaling video")


def is_video(path: str | os.PathLike) -> bool:
    """True for a file name with a video suffix (.mp4, .m4v, .mov, .mkv, .webm, .avi; any case)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def split_video_inputs(inputs: Sequence[str | os.PathLike], recursive: bool = False
                       ) -> tuple[list[tuple[Path, Path]], list[str | os.PathLike]]:
    """Split `realsr upscale` inputs into videos and what the image job should get.

    Returns ((video file, name under OUTPUT) for each video, in input order, each once;
    image inputs): video files named directly, and the videos inside folders (hidden names
    skipped; sub-folders with `recursive`). The image inputs are the named non-video files and
    the folders that hold at least one image, so that a folder of videos alone is not an "no
    images found" error of the image job. Missing paths raise RealSRError.
    """
    videos: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    images: list[str | os.PathLike] = []
    for item in inputs:
        root = Path(item)
        if not root.exists():
            raise RealSRError(f"{root}: no such file or folder")
        if root.is_dir():
            found = sorted(_videos_in_folder(root, recursive))
            pairs = [(path, path.relative_to(root)) for path in found]
            if not found or list_images([root], recursive):
                images.append(item)
        elif is_video(root):
            pairs = [(root, Path(root.name))]
        else:
            images.append(item)
            continue
        for path, relative in pairs:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                videos.append((path, relative))
    return videos, images


def _videos_in_folder(folder: Path, recursive: bool) -> Iterator[Path]:
    for path in folder.rglob("*") if recursive else folder.iterdir():
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if is_video(path) and path.is_file():
            yield path


def plan_video_jobs(videos: Sequence[tuple[Path, Path]], output: str | os.PathLike,
                    single_input: bool) -> list[VideoJob]:
    """Map videos to output files: OUTPUT itself for one video named alone with a video-suffixed
    OUTPUT, else OUTPUT/<name under OUTPUT> (same container as the input). Refuses writing onto an
    input or two videos onto one output (RealSRError), before any work."""
    output = Path(output)
    output_is_file = (output.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES) and not output.is_dir()
    if output_is_file and not (single_input and len(videos) == 1):
        raise RealSRError(f"several inputs need an output folder, but {output} looks like a file name")
    if output_is_file and not is_video(output):
        raise RealSRError(f"{output}: a video is written as a video ({', '.join(sorted(VIDEO_SUFFIXES))})")
    jobs = [VideoJob(videos[0][0], output)] if output_is_file else [
        VideoJob(source, output / relative) for source, relative in videos]
    owners: dict[Path, Path] = {}
    inputs = {_file_id(job.source) for job in jobs}
    for job in jobs:
        if job.target.exists() and _file_id(job.target) in inputs:
            raise RealSRError(f"{job.target} is an input video and would be overwritten; choose another output (-o)")
        key = Path(os.path.normcase(job.target.resolve()))
        if key in owners:
            raise RealSRError(f"{owners[key]} and {job.source} would both be written to {job.target}; "
                              "upscale them into separate output folders")
        owners[key] = job.source
    return jobs


def _file_id(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_dev, status.st_ino


def upscale_videos(
    videos: Sequence[tuple[Path, Path]],
    output: str | os.PathLike,
    settings: UpscalerSettings = UpscalerSettings(),
    video: VideoOptions = VideoOptions(),
    *,
    single_input: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
) -> VideoReport:
    """Upscale `videos` (from :func:`split_video_inputs`) into `output`; one report for all.

    `settings` picks the `Upscaler`, the same as for images; `video` says how each is encoded,
    which segment and at what size. Existing outputs are skipped unless `overwrite`. A video that
    cannot be read or written is reported and the rest go on.

    `shard` (rank, world) under torchrun: with at least as many videos as ranks, each rank takes
    whole videos, jobs rank::world of the plan; with fewer, every rank works on every video, batch
    `i` of its frames upscaled by rank `i % world` and sent to rank 0, which encodes (`FrameShare`);
    an error in a shared video then stops the run (the other ranks wait for it).
    """
    from realsr_fast.inference.upscaler import Upscaler

    import_av()  # before any work: one line naming the extra when PyAV is missing
    start = time.perf_counter()
    report = VideoReport()
    plan = plan_video_jobs(videos, output, single_input)
    rank, world = shard
    share = FrameShare(rank, world) if world > 1 and len(plan) < world else None
    jobs = plan if share else plan[rank::world]
    todo = [job for job in jobs if overwrite or not job.target.exists()]
    if share is not None:
        todo = share.from_rank0(todo)  # rank 0 decides: the ranks must agree on every video
        if rank != 0:
            jobs = todo
    report.skipped = [job.target for job in jobs if job not in todo]
    loaded = Upscaler.from_settings(settings) if todo else None  # an error here is no video's fault: it stops
    for job in todo:
        try:
            frames = upscale_video(loaded, job.source, job.target, video, progress=progress, share=share)
        except RealSRError as exc:
            if share is not None:
                raise
            report.fail(job.source, exc)
            if progress:
                print(f"failed: {exc}", file=sys.stderr)
        else:
            if share is None or rank == 0:
                report.done.append(job.target)
                report.frames += frames
    report.seconds = time.perf_counter() - start
    return report


def upscale_video(upscaler: Upscaler, source: str | os.PathLike, target: str | os.PathLike,
                  options: VideoOptions = VideoOptions(), progress: bool = True,
                  share: FrameShare | None = None) -> int:
    """Upscale one video file into `target` (atomically); returns the number of frames written.

    See the module docstring for what is kept.
    `share`: torchrun ranks sharing the frames (`upscale_videos`); a rank other than 0 only
    upscales its batches and sends them, writes nothing and returns 0.
    Raises RealSRError naming the file for unreadable input, no video stream, an unknown codec or
    pixel format, or an encoder/muxer error.
    """
    av = import_av()
    if share is not None and share.rank != 0:
        return _help_rank0(av, upscaler, Path(source), options, share)
    source, target = Path(source), Path(target)
    fmt = CONTAINER_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise RealSRError(f"{target}: unknown video suffix; use one of {', '.join(sorted(VIDEO_SUFFIXES))}")
    with _open_video(av, source) as container:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with _sigterm_interrupts(), atomic_path(target) as temporary:
                try:
                    with av.open(str(temporary), "w", format=fmt) as out:
                        return Transcoder(av, container, out, upscaler, options, share).run(progress)
                except av.FFmpegError as exc:
                    raise RealSRError(f"{source}: video error ({exc})") from None
        except OSError as exc:
            raise RealSRError(f"cannot write {target}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _open_video(av, source: Path) -> Iterator[object]:
    """The input container of `source`, closed after the block; RealSRError when it cannot be opened
    or has no video stream."""
    try:
        container = av.open(str(source))
    except (av.FFmpegError, OSError) as exc:
        raise RealSRError(f"{source}: cannot open the video ({exc})") from None
    try:
        if not container.streams.video:
            raise RealSRError(f"{source}: has no video stream")
        yield container
    finally:
        container.close()


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (torchrun stopping the other ranks when one fails, `kill`) acts as Ctrl-C while a
    video is written, so its temporary file is removed too. Main thread only; the previous handler
    is put back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _help_rank0(av, upscaler: Upscaler, source: Path, options: VideoOptions, share: FrameShare) -> int:
    with _open_video(av, source) as container:
        try:
            Transcoder(av, container, None, upscaler, options, share).run(progress=False)
        except av.FFmpegError as exc:
            raise RealSRError(f"{source}: video error ({exc})") from None
    return 0


