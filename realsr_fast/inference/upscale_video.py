"""Upscale video files: decode, upscale and encode as a stream; copy audio and subtitles untouched.

`realsr upscale clip.mp4 -o clip_x4.mp4` (and videos inside input folders) comes here through
`upscale_videos`; PyAV (`pip install 'realsr_fast[video]'`) does the decoding, encoding and muxing.

What a video job keeps and changes:
- frames: each decoded frame (as RGB, 8 bits, or 16 bits when the input has more than 8) goes
  through `Upscaler.upscale_image`, the function `realsr upscale` runs on a photo, so a frame comes
  out exactly as that frame saved as a PNG would; on a GPU several frames go to the network as one
  `(B, 3, H, W)` batch (`VideoOptions.batch`);
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
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from realsr_fast.batch import BatchReport
from realsr_fast.errors import RealSRError
from realsr_fast.io import IMAGE_SUFFIXES, atomic_path, list_images
from realsr_fast.optional import import_optional

if TYPE_CHECKING:
    from realsr_fast.inference.upscaler import Upscaler

#: File suffixes treated as videos (lower case), and the FFmpeg muxer each is written with.
CONTAINER_FORMATS: dict[str, str] = {
    ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi",
}
VIDEO_SUFFIXES: frozenset[str] = frozenset(CONTAINER_FORMATS)

# Encoders tried in order when --codec is not given (the first the bundled FFmpeg has).
_DEFAULT_CODECS = {"webm": ("libvpx-vp9", "libaom-av1", "libsvtav1"),
                   None: ("libx264", "libx265", "libopenh264", "mpeg4")}
# Frames per network call when `VideoOptions.batch` is None: batching helps GPUs, not CPUs.
_GPU_BATCH = 4
# Tags that muxers write about the file itself (not the user's): never copied.
_GENERATED_TAGS = {"encoder", "duration", "number_of_frames", "number_of_bytes", "bps", "major_brand",
                   "minor_version", "compatible_brands"}


@dataclass(frozen=True)
class VideoOptions:
    """How to encode and which part to upscale.

    codec: FFmpeg encoder name (None: libx264, or VP9 for .webm); crf: constant rate factor
    (None: the encoder's default); pix_fmt: the encoder's pixel format (None: the input's when the
    encoder takes it, else yuv420p); start / duration: the segment in seconds (duration None: to
    the end); batch: frames per network call (None: 1 on the CPU, 4 on a GPU); metadata: copy
    the container's and the streams' tags (title, language, creation time...) and dispositions.
    """

    codec: str | None = None
    crf: int | None = None
    pix_fmt: str | None = None
    start: float = 0.0
    duration: float | None = None
    batch: int | None = None
    metadata: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and self.start >= 0):
            raise RealSRError(f"--start must be a number of seconds >= 0, got {self.start}")
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration > 0):
            raise RealSRError(f"--duration must be a number of seconds > 0, got {self.duration}")
        if self.crf is not None and self.crf < 0:
            raise RealSRError(f"--crf must be >= 0, got {self.crf}")
        if self.batch is not None and self.batch < 1:
            raise RealSRError(f"the video batch must be >= 1 frame, got {self.batch}")


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
    *,
    single_input: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
    video: VideoOptions = VideoOptions(),
    size: object = None,
    **upscaler: object,
) -> VideoReport:
    """Upscale `videos` (from :func:`split_video_inputs`) into `output`; one report for all.

    `upscaler` holds the `Upscaler`'s arguments (model, device, precision, tile, ...), the same as
    for images. `size` is an `inference.output_size.OutputSize` (or None: the model's scale).
    Existing outputs are skipped unless `overwrite`. A video that cannot be read or written is
    reported and the rest go on.

    `shard` (rank, world) under torchrun: with at least as many videos as ranks, each rank takes
    whole videos, jobs rank::world of the plan; with fewer, every rank works on every video, batch
    `i` of its frames upscaled by rank `i % world` and sent to rank 0, which encodes (`FrameShare`);
    an error in a shared video then stops the run (the other ranks wait for it).
    """
    from realsr_fast.inference.backends import UpscalerSettings

    import_av()  # before any work: one line naming the extra when PyAV is missing
    settings = UpscalerSettings(**upscaler)
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
    loaded = _load_upscaler(settings) if todo else None  # an error here is no video's fault: it stops
    for job in todo:
        try:
            frames = upscale_video(loaded, job.source, job.target, video, size=size, progress=progress,
                                   share=share)
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


def _load_upscaler(settings) -> Upscaler:
    import dataclasses

    from realsr_fast.inference.upscaler import Upscaler

    return Upscaler(**dataclasses.asdict(settings))


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


def upscale_video(upscaler: Upscaler, source: str | os.PathLike, target: str | os.PathLike,
                  options: VideoOptions = VideoOptions(), size: object = None, progress: bool = True,
                  share: FrameShare | None = None) -> int:
    """Upscale one video file into `target` (atomically); returns the number of frames written.

    See the module docstring for what is kept. `size`: an `OutputSize` or None (model scale).
    `share`: torchrun ranks sharing the frames (`upscale_videos`); a rank other than 0 only
    upscales its batches and sends them, writes nothing and returns 0.
    Raises RealSRError naming the file for unreadable input, no video stream, an unknown codec or
    pixel format, or an encoder/muxer error.
    """
    av = import_av()
    if share is not None and share.rank != 0:
        return _help_rank0(av, upscaler, Path(source), options, size, share)
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
                        return _Transcoder(av, container, out, upscaler, options, size, fmt, source, share).run(progress)
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


def _help_rank0(av, upscaler: Upscaler, source: Path, options: VideoOptions, size, share: FrameShare) -> int:
    with _open_video(av, source) as container:
        try:
            _Transcoder(av, container, None, upscaler, options, size, "", source, share).run(progress=False)
        except av.FFmpegError as exc:
            raise RealSRError(f"{source}: video error ({exc})") from None
    return 0


class _Transcoder:
    """One input container -> one output container: the video re-encoded, audio/subtitles copied.

    With `out` None (a rank helping rank 0, `share`), frames are decoded and this rank's batches
    upscaled and sent; nothing is written."""

    def __init__(self, av, container, out, upscaler: Upscaler, options: VideoOptions, size, fmt: str,
                 source: Path, share: FrameShare | None = None) -> None:
        self.av, self.container, self.out, self.upscaler = av, container, out, upscaler
        self.share, self.batches = share, 0
        self.options, self.size, self.fmt, self.source = options, size, fmt, source
        self.video = container.streams.video[0]
        self.video.thread_type = "AUTO"
        self.copied = [s for s in container.streams if s.type in ("audio", "subtitle")] if out is not None else []
        self.encoder = None
        self.started = False
        self.mapping: dict[int, object] = {}
        self.pending: list = []  # packets to copy that arrive before the encoder exists
        self.batch: list = []  # decoded frames waiting for the network
        self.frames = 0
        self.tb = self.video.time_base
        self.start_pts = {s.index: round(options.start / s.time_base) for s in [self.video, *self.copied]
                          if s.time_base} if options.start else {}
        self.end = None if options.duration is None else options.start + options.duration
        self.batch_size = options.batch or (1 if upscaler.device.type == "cpu" else _GPU_BATCH)

    # --- the stream loop ----------------------------------------------------------------------
    def run(self, progress: bool) -> int:
        from tqdm import tqdm

        if self.options.start:
            self.container.seek(int(self.options.start * self.av.time_base), backward=True, any_frame=False)
        total = self._expected_frames()
        with tqdm(total=total, unit="frame", disable=None if progress else True, file=sys.stderr,
                  dynamic_ncols=True, desc=self.source.name) as bar:
            self.bar = bar
            done = False
            for packet in self.container.demux(self.video, *self.copied):
                if packet.stream.index == self.video.index:
                    for frame in packet.decode():
                        if not self._take_frame(frame):
                            done = True
                elif self._before_end(packet):
                    self._copy(packet)
                if done and self._past_end(packet):
                    break
            self._flush_batch()
            if self.out is None:
                return self.frames
            if self.encoder is None:
                raise RealSRError(f"{self.source}: no video frames"
                                  + (" in the segment asked for (--start/--duration)" if self.options.start
                                     or self.end is not None else ""))
            for packet in self.encoder.encode(None):
                self.out.mux(packet)
        return self.frames

    def _expected_frames(self) -> int | None:
        rate = self.video.average_rate or self.video.guessed_rate
        if self.end is not None and rate:
            seconds = self.options.duration
        elif self.video.duration is not None and self.video.time_base:
            seconds = float(self.video.duration * self.video.time_base) - self.options.start
        elif self.container.duration:
            seconds = self.container.duration / self.av.time_base - self.options.start
        else:
            return self.video.frames or None
        if not self.options.start and self.end is None and self.video.frames:
            return self.video.frames
        return max(0, round(seconds * float(rate))) if rate else None

    def _seconds(self, pts, stream) -> float | None:
        return None if pts is None or not stream.time_base else float(pts * stream.time_base)

    def _before_end(self, packet) -> bool:
        seconds = self._seconds(packet.pts, packet.stream)
        return self.end is None or seconds is None or seconds < self.end

    def _past_end(self, packet) -> bool:
        seconds = self._seconds(packet.pts, packet.stream)
        return seconds is not None and self.end is not None and seconds > self.end + 1.0

    def _take_frame(self, frame) -> bool:
        """Queue a decoded frame (False once past the segment's end)."""
        seconds = self._seconds(frame.pts, self.video)
        if seconds is not None and seconds + 1e-9 < self.options.start:
            return True
        if seconds is not None and self.end is not None and seconds >= self.end - 1e-9:
            return False
        if not self.started:
            self._start(frame)
        self.batch.append(frame)
        if len(self.batch) >= self.batch_size:
            self._flush_batch()
        return True

    def _flush_batch(self) -> None:
        if not self.batch:
            return
        frames, self.batch = self.batch, []
        owner = 0 if self.share is None else self.share.owner(self.batches)
        me = 0 if self.share is None else self.share.rank
        self.batches += 1
        if owner == me:
            images = upscale_frames(self.upscaler, [self._to_rgb(frame) for frame in frames], self.out_size)
            if me != 0:
                self.share.send(images)
                self.frames += len(frames)
                return
        elif me == 0:
            images = self.share.receive(owner, [self._out_shape(frame) for frame in frames], self.dtype)
        else:
            return  # another helper's batch
        for frame, image in zip(frames, images):
            self._encode(frame, image)
        self.bar.update(len(frames))

    def _out_shape(self, frame) -> tuple[int, int, int]:
        if self.out_size is not None:
            return (*self.out_size, 3)
        return frame.height * self.upscaler.scale, frame.width * self.upscaler.scale, 3

    # --- frames in and out ----------------------------------------------------------------------
    def _to_rgb(self, frame) -> np.ndarray:
        """(H, W, 3) uint8, or uint16 for inputs of more than 8 bits, as stored (no rotation)."""
        return frame.to_ndarray(format=self.rgb_format, src_color_range=frame.color_range or None)

    def _encode(self, source_frame, image: np.ndarray) -> None:
        av = self.av
        frame = av.VideoFrame.from_ndarray(image, format=self.rgb_format)
        if not self.rgb_output:
            frame = frame.reformat(format=self.encoder.codec_context.pix_fmt,
                                   dst_colorspace=self.colour["colorspace"] or None,
                                   dst_color_range=self.colour["color_range"] or None)
        offset = self.start_pts.get(self.video.index, 0)
        frame.pts = None if source_frame.pts is None else source_frame.pts - offset
        frame.time_base = self.tb
        for packet in self.encoder.encode(frame):
            self.out.mux(packet)
        self.frames += 1

    def _copy(self, packet) -> None:
        if packet.dts is None and packet.pts is None:
            return  # the demuxer's flush packet
        seconds = self._seconds(packet.pts if packet.pts is not None else packet.dts, packet.stream)
        if self.options.start and seconds is not None and seconds + 1e-9 < self.options.start:
            return
        if self.encoder is None:
            self.pending.append(packet)
            return
        self._mux_copy(packet)

    def _mux_copy(self, packet) -> None:
        offset = self.start_pts.get(packet.stream.index, 0)
        if offset:
            packet.pts = None if packet.pts is None else packet.pts - offset
            packet.dts = None if packet.dts is None else packet.dts - offset
        packet.stream = self.mapping[packet.stream.index]
        self.out.mux(packet)

    # --- the output streams -----------------------------------------------------------------------
    def _start(self, frame) -> None:
        """From the first frame: the RGB depth and output size, then (writing) the output streams."""
        self.started = True
        bits = max(c.bits for c in frame.format.components) if frame.format.components else 8
        self.rgb_format = "rgb48le" if bits > 8 else "rgb24"
        self.dtype = np.dtype(np.uint16 if bits > 8 else np.uint8)
        self.out_size = None
        if self.size is not None and not self.size.is_model_scale:
            self.out_size = self.size.pixels(frame.height, frame.width, self.upscaler.scale)
        if self.out is not None:
            self._open_encoder(frame, bits)

    def _open_encoder(self, frame, bits: int) -> None:
        """Add the encoder (sized from the first frame) and the copied streams, then mux what waited."""
        av, options = self.av, self.options
        out_h, out_w = self._out_shape(frame)[:2]
        codec = options.codec or _default_codec(av, self.fmt)
        if codec not in av.codecs_available:
            raise RealSRError(f"the video encoder {codec!r} is not in this FFmpeg (PyAV's); try libx264, "
                              "libx265, libvpx-vp9 or ffv1")
        rate = self.video.average_rate or self.video.guessed_rate or 25
        try:
            encoder = self.out.add_stream(codec, rate=rate)
        except (ValueError, av.FFmpegError) as exc:
            raise RealSRError(f"cannot encode {codec} into a .{self.fmt} file ({exc})") from None
        encoder.width, encoder.height = out_w, out_h
        encoder.pix_fmt = _pixel_format(av, codec, options.pix_fmt, frame.format.name, bits)
        encoder.time_base = self.tb
        encoder.codec_context.time_base = self.tb
        if self.video.sample_aspect_ratio:
            encoder.codec_context.sample_aspect_ratio = self.video.sample_aspect_ratio
        if options.crf is not None:
            encoder.codec_context.options = {**encoder.codec_context.options, "crf": str(options.crf)}
        if codec == "libvpx-vp9" and options.crf is not None:
            encoder.codec_context.bit_rate = 0
        self.colour = {}
        for name in ("colorspace", "color_range", "color_primaries", "color_trc"):
            value = getattr(frame, name, None)
            self.colour[name] = value
            if value:
                try:
                    setattr(encoder.codec_context, name, value)
                except (AttributeError, TypeError, ValueError):
                    pass
        self.rgb_output = av.VideoFormat(encoder.pix_fmt).is_rgb
        matrix = _display_matrix(frame)
        if matrix is not None and hasattr(encoder, "set_display_matrix"):  # not in older PyAV
            encoder.set_display_matrix(matrix)
        for stream in self.copied:
            try:
                self.mapping[stream.index] = self.out.add_stream_from_template(stream)
            except (ValueError, av.FFmpegError) as exc:
                raise RealSRError(f"{self.source}: its {stream.type} stream ({stream.codec_context.name}) cannot be "
                                  f"copied into a .{self.fmt} file ({exc}); choose another output container") from None
        if options.metadata:
            _copy_tags(self.container, self.out)
            for stream in [self.video, *self.copied]:
                _copy_tags(stream, encoder if stream is self.video else self.mapping[stream.index])
        self.encoder = encoder
        pending, self.pending = self.pending, []
        for packet in pending:
            self._mux_copy(packet)


def _copy_tags(source, target) -> None:
    """The user's tags of a container or stream (not those a muxer writes), and a stream's disposition."""
    for key, value in source.metadata.items():
        if key.lower() not in _GENERATED_TAGS and not key.upper().startswith("_STATISTICS"):
            target.metadata[key] = value
    if hasattr(source, "disposition"):
        try:
            target.disposition = source.disposition
        except (AttributeError, TypeError, ValueError):
            pass


def _default_codec(av, fmt: str) -> str:
    for codec in _DEFAULT_CODECS.get(fmt, _DEFAULT_CODECS[None]):
        if codec in av.codecs_available:
            return codec
    raise RealSRError(f"no default video encoder for .{fmt} in this FFmpeg; name one with --codec")


def _pixel_format(av, codec: str, asked: str | None, input_format: str, bits: int) -> str:
    """The encoder's pixel format: `asked`, else the input's if the encoder takes it, else a
    10-bit yuv420p for deep inputs where it can, else yuv420p, else the encoder's first."""
    supported = [f.name for f in (av.Codec(codec, "w").video_formats or [])]
    if asked is not None:
        if supported and asked not in supported:
            raise RealSRError(f"the encoder {codec} takes no pixel format {asked!r}; it takes {', '.join(supported)}")
        return asked
    if not supported:
        return input_format
    candidates = [input_format] + (["yuv420p10le", "yuv420p12le"] if bits > 8 else []) + ["yuv420p"]
    for name in candidates:
        if name in supported:
            return name
    return supported[0]


def _display_matrix(frame) -> list[int] | None:
    """The frame's display matrix (9 int32) when it has one that is not the identity."""
    for key in frame.side_data.keys():
        if getattr(key, "name", str(key)) == "DISPLAYMATRIX":
            matrix = np.frombuffer(bytes(frame.side_data[key]), dtype=np.int32)[:9].tolist()
            return None if matrix == [65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30] else matrix
    return None


def upscale_frames(upscaler: Upscaler, frames: list[np.ndarray], size: tuple[int, int] | None = None
                   ) -> list[np.ndarray]:
    """Upscale `(H, W, 3)` uint8/uint16 frames to `(s*H, s*W, 3)` (or `size`) of the same dtype.

    One frame goes through `Upscaler.upscale_image`, exactly as a photo would; several go to the
    network as one `(B, 3, H, W)` batch and then through the same steps as `upscale_image` does
    for RGB (resize to `size`, `tensor_to_image`).
    """
    if len(frames) == 1:
        if size is None:
            return [upscaler.upscale_image(frames[0])]
        return [upscaler.upscale_image(frames[0], size=size)]
    import torch

    from realsr_fast.io import image_to_tensor, tensor_to_image

    x = torch.cat([image_to_tensor(frame) for frame in frames])  # (B, 3, H, W)
    y = upscaler.upscale_tensor(x)  # (B, 3, sH, sW)
    out = []
    for i, frame in enumerate(frames):
        yi = y[i:i + 1]
        if size is not None:
            from realsr_fast.inference.output_size import resize_output

            yi = resize_output(yi, size)
        out.append(tensor_to_image(yi, frame.dtype))
    return out

