"""One video stream through the upscaler: decode, batch, upscale, encode; audio and subtitle
packets copied untouched (`Transcoder`), and the encoder's settings (`VideoOptions`).

The job around it (plans, outputs written atomically, torchrun) is `inference.upscale_video`;
what is kept and changed is listed there.

Segments (`VideoOptions.start`, `duration`) are measured from the video stream's first timestamp
(its start_time; the container's when the stream has none), as FFmpeg's -ss is: many files
(MPEG-TS, cut MP4s, camera files) do not start at pts 0. The output is shifted so that the segment
starts at 0 in every stream, by the same time in each, so audio stays in sync.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from realsr_fast.errors import RealSRError

if TYPE_CHECKING:
    from realsr_fast.inference.frame_share import FrameShare
    from realsr_fast.inference.output_size import OutputSize
    from realsr_fast.inference.upscaler import Upscaler

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
    the container's and the streams' tags (title, language, creation time...) and dispositions;
    size: the output frames' size (an `OutputSize`; None: the model's scale).
    """

    codec: str | None = None
    crf: int | None = None
    pix_fmt: str | None = None
    start: float = 0.0
    duration: float | None = None
    batch: int | None = None
    metadata: bool = True
    size: OutputSize | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and self.start >= 0):
            raise RealSRError(f"--start must be a number of seconds >= 0, got {self.start}")
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration > 0):
            raise RealSRError(f"--duration must be a number of seconds > 0, got {self.duration}")
        if self.crf is not None and self.crf < 0:
            raise RealSRError(f"--crf must be >= 0, got {self.crf}")
        if self.batch is not None and self.batch < 1:
            raise RealSRError(f"the video batch must be >= 1 frame, got {self.batch}")


class Transcoder:
    """One input container -> one output container: the video re-encoded, audio/subtitles copied.

    `av` is the PyAV module; `out` the output container, or None for a rank helping rank 0
    (`share`): frames are then decoded and this rank's batches upscaled and sent; nothing is written.
    Frames go through `upscale_frames` as (H, W, 3) uint8/uint16 RGB, batch by batch."""

    def __init__(self, av, container, out, upscaler: Upscaler, options: VideoOptions,
                 share: FrameShare | None = None) -> None:
        self.av, self.container, self.out, self.upscaler = av, container, out, upscaler
        self.share, self.batches = share, 0
        self.options, self.size = options, options.size
        self.fmt, self.source = "" if out is None else out.format.name, Path(container.name)
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
        # The segment in the streams' own time (seconds), and each stream's shift to start at 0.
        self.start = self._first_seconds() + options.start
        self.start_pts = {s.index: round(self.start / s.time_base) for s in [self.video, *self.copied]
                          if s.time_base} if options.start else {}
        self.end = None if options.duration is None else self.start + options.duration
        self.batch_size = options.batch or (1 if upscaler.device.type == "cpu" else _GPU_BATCH)

    def _first_seconds(self) -> float:
        """The video stream's first timestamp in seconds (its start_time, else the container's, else 0)."""
        if self.video.start_time is not None and self.video.time_base:
            return float(self.video.start_time * self.video.time_base)
        return self.container.start_time / self.av.time_base if self.container.start_time else 0.0

    # --- the stream loop ----------------------------------------------------------------------
    def run(self, progress: bool) -> int:
        from tqdm import tqdm

        if self.options.start:
            self.container.seek(int(self.start * self.av.time_base), backward=True, any_frame=False)
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
        if seconds is not None and seconds + 1e-9 < self.start:
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
        if self.options.start and seconds is not None and seconds + 1e-9 < self.start:
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

