"""`realsr upscale` on videos: frames equal the image path, audio copied byte for byte, the same
timestamps, a segment, atomic outputs, and memory that does not grow with the clip's length.

Clips are made here with PyAV: a few frames of 24 x 16 noise in a lossless codec (FFV1, bgr0), with
a FLAC audio stream, so every decoded pixel is known exactly; the model is a tiny random RRDBNet.
"""
from __future__ import annotations

import fractions
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from realsr_fast import cli
from realsr_fast.models.formats import save_safetensors
from realsr_fast.models.rrdbnet import RRDBNet

av = pytest.importorskip("av")

ROOT = Path(__file__).resolve().parents[1]
RATE = fractions.Fraction(24, 1)
LOSSLESS = ["--codec", "ffv1", "--pix-fmt", "bgr0"]


@pytest.fixture(autouse=True)
def only_upscale_verb(monkeypatch):
    monkeypatch.setattr(cli, "VERBS", ("upscale",))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    torch.manual_seed(5)
    network = RRDBNet(nf=8, nb=1, gc=4).eval()
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_safetensors(path, network.state_dict(), network.config())
    return path


def make_clip(path: Path, frames: int = 6, height: int = 16, width: int = 24, audio: bool = True,
              seed: int = 0, subtitles: bool = False, first_pts: int = 0) -> list[np.ndarray]:
    """A lossless RGB clip (FFV1 bgr0) at 24 fps with a 1 kHz FLAC tone (and two SubRip subtitles);
    returns its frames. Video and audio start at `first_pts` frames (most clips start at 0)."""
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(frames)]
    with av.open(str(path), "w") as out:
        out.metadata["title"] = "a test clip"
        video = out.add_stream("ffv1", rate=RATE)
        video.width, video.height, video.pix_fmt = width, height, "bgr0"
        sound = out.add_stream("flac", rate=8000, layout="mono") if audio else None
        if sound is not None:
            sound.metadata["language"] = "fra"
        if subtitles:  # SubRip packets, taken from a .srt file beside the clip
            srt = path.with_suffix(".srt")
            srt.write_text("1\n00:00:00,000 --> 00:00:00,100\nHello\n\n2\n00:00:00,120 --> 00:00:00,200\nWorld\n")
            with av.open(str(srt)) as subtitle_file:
                text = out.add_stream_from_template(subtitle_file.streams.subtitles[0])
                for packet in subtitle_file.demux(subtitle_file.streams.subtitles[0]):
                    if packet.size:
                        packet.stream = text
                        out.mux(packet)
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = first_pts + i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            samples = int(8000 * frames / RATE)
            tone = (np.sin(np.arange(samples) * 2 * np.pi * 1000 / 8000) * 8000).astype(np.int16)
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="s16", layout="mono")
                chunk.sample_rate, chunk.pts = 8000, start + int(8000 * first_pts / RATE)
                for packet in sound.encode(chunk):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
    return images


def decoded(path: Path) -> tuple[list[np.ndarray], list[float]]:
    """Every frame as RGB and its time in seconds."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
        return [f.to_ndarray(format="rgb24") for f in frames], [float(f.pts * f.time_base) for f in frames]


def audio_packets(path: Path) -> list[tuple[bytes, float]]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return [(bytes(p), float(p.pts * p.time_base)) for p in container.demux(stream) if p.size]


def subtitle_packets(path: Path) -> list[tuple[bytes, float]]:
    with av.open(str(path)) as container:
        stream = container.streams.subtitles[0]
        return [(bytes(p), float(p.pts * p.time_base)) for p in container.demux(stream) if p.size]


def test_frames_equal_the_image_path_and_audio_and_timestamps_are_kept(tmp_path, tiny_model):
    from realsr_fast.inference.upscaler import Upscaler

    source = tmp_path / "clip.mkv"
    make_clip(source, subtitles=True)
    out = tmp_path / "clip_x4.mkv"
    assert cli.main(["upscale", str(source), "-o", str(out), "--model", str(tiny_model), "--device", "cpu",
                     "--backend", "torch", "--precision", "fp32", *LOSSLESS]) == 0
    inputs, input_times = decoded(source)
    outputs, output_times = decoded(out)
    upscaler = Upscaler(tiny_model, device="cpu", precision="fp32")
    assert len(outputs) == len(inputs) == 6 and output_times == input_times
    for image, got in zip(inputs, outputs):
        assert np.array_equal(got, upscaler.upscale_image(image))  # the path `realsr upscale frame.png` takes
    assert audio_packets(out) == audio_packets(source)
    assert subtitle_packets(out) == subtitle_packets(source) and len(subtitle_packets(out)) == 2
    with av.open(str(source)) as a, av.open(str(out)) as b:
        assert b.streams.video[0].time_base == a.streams.video[0].time_base
        assert b.streams.video[0].average_rate == RATE
        assert b.metadata["title"] == "a test clip" and b.streams.audio[0].language == "fra"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_folder_of_videos_and_images_and_existing_outputs_skipped(tmp_path, tiny_model, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "a.mkv", frames=2, audio=False)
    make_clip(folder / "b.mp4", frames=2, audio=False)
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "c.png")
    args = ["upscale", str(folder), "-o", str(tmp_path / "out"), "--model", str(tiny_model), "--device", "cpu",
            "--backend", "torch"]
    assert cli.main(args) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mkv", "b.mp4", "c.png"]
    with av.open(str(tmp_path / "out" / "b.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and (stream.width, stream.height) == (96, 64)
        assert len(list(container.decode(stream))) == 2
    capsys.readouterr()
    assert cli.main(args) == 0
    assert "2 skipped" in capsys.readouterr().out


def test_segment_start_and_duration(tmp_path, tiny_model):
    source = tmp_path / "clip.mkv"
    make_clip(source, frames=12)
    out = tmp_path / "part.mkv"
    assert cli.main(["upscale", str(source), "-o", str(out), "--model", str(tiny_model), "--device", "cpu",
                     "--backend", "torch", "--start", "0.125", "--duration", "0.25", *LOSSLESS]) == 0
    frames, times = decoded(out)
    assert len(frames) == 6 and times[0] == 0 and times[-1] == pytest.approx(5 / 24, abs=1e-3)
    everything, _ = decoded(source)
    with av.open(str(out)) as container:
        assert container.streams.audio  # the audio of the segment is there
    from realsr_fast.inference.upscaler import Upscaler

    upscaler = Upscaler(tiny_model, device="cpu", precision="fp32")
    assert np.array_equal(frames[0], upscaler.upscale_image(everything[3]))


def test_segment_of_a_clip_whose_first_pts_is_not_0(tmp_path, tiny_model):
    """--start is measured from the stream's first timestamp, as FFmpeg's -ss is."""
    source = tmp_path / "late.mkv"
    everything = make_clip(source, frames=12, first_pts=48)  # starts at 2 s
    with av.open(str(source)) as container:
        assert container.streams.video[0].start_time * container.streams.video[0].time_base == 2
    out = tmp_path / "part.mkv"
    assert cli.main(["upscale", str(source), "-o", str(out), "--model", str(tiny_model), "--device", "cpu",
                     "--backend", "torch", "--start", "0.125", "--duration", "0.25", *LOSSLESS]) == 0
    frames, times = decoded(out)
    assert len(frames) == 6 and times[0] == 0 and times[-1] == pytest.approx(5 / 24, abs=1e-3)
    with av.open(str(out)) as container:
        audio = [float(p.pts * p.time_base) for p in container.demux(container.streams.audio[0]) if p.size]
    assert audio and 0 <= audio[0] < 0.25  # shifted with the video, so it stays in sync
    from realsr_fast.inference.upscaler import Upscaler

    upscaler = Upscaler(tiny_model, device="cpu", precision="fp32")
    for i, got in enumerate(frames):
        assert np.array_equal(got, upscaler.upscale_image(everything[3 + i]))


def test_ten_bit_input_stays_ten_bit(tmp_path, tiny_model):
    source = tmp_path / "deep.mkv"
    with av.open(str(source), "w") as out:
        video = out.add_stream("ffv1", rate=RATE)
        video.width, video.height, video.pix_fmt = 16, 16, "yuv444p10le"
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 1000 * (i + 1), np.uint16), format="rgb48le")
            frame = frame.reformat(format="yuv444p10le")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    target = tmp_path / "deep_x4.mp4"
    assert cli.main(["upscale", str(source), "-o", str(target), "--model", str(tiny_model), "--device", "cpu",
                     "--backend", "torch"]) == 0
    with av.open(str(target)) as container:
        assert container.streams.video[0].codec_context.pix_fmt in ("yuv444p10le", "yuv420p10le")


def test_rotation_tag_is_kept_and_pixels_stay_as_stored(tmp_path, tiny_model):
    source = tmp_path / "phone.mp4"
    with av.open(str(source), "w") as out:
        video = out.add_stream("libx264", rate=RATE)
        video.width, video.height, video.pix_fmt = 24, 16, "yuv420p"
        video.set_display_rotation(90)
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(np.full((16, 24, 3), 60 * i, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    target = tmp_path / "phone_x4.mp4"
    assert cli.main(["upscale", str(source), "-o", str(target), "--model", str(tiny_model), "--device", "cpu",
                     "--backend", "torch"]) == 0
    with av.open(str(target)) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height, frame.rotation) == (96, 64, 90)


def test_errors_leave_no_file(tmp_path, tiny_model, capsys, monkeypatch):
    source = tmp_path / "clip.mkv"
    make_clip(source, frames=3, audio=False)
    target = tmp_path / "out.mkv"
    args = ["upscale", str(source), "-o", str(target), "--model", str(tiny_model), "--device", "cpu",
            "--backend", "torch"]
    assert cli.main([*args, "--codec", "no-such-codec"]) == 1
    assert "no-such-codec" in capsys.readouterr().err
    from realsr_fast.inference import video_stream

    def interrupt(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(video_stream, "upscale_frames", interrupt)
    assert cli.main(args) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    assert cli.main([*args[:1], str(tmp_path / "bad.mp4"), *args[2:]]) == 1
    assert "bad.mp4" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4", "clip.mkv"]


@pytest.mark.slow
def test_sigterm_leaves_no_file(tmp_path, tiny_model):
    """torchrun stops the other ranks with SIGTERM when one fails: the temporary file goes too."""
    source = tmp_path / "clip.mkv"
    make_clip(source, frames=96, height=120, width=160, audio=False)
    out = tmp_path / "out"
    out.mkdir()
    process = subprocess.Popen([sys.executable, "-c", RSS_SCRIPT, str(tiny_model), str(source), str(out / "x.mkv")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(out.iterdir()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "finished before it could be stopped"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0 and b"KeyboardInterrupt" in stderr
    assert list(out.iterdir()) == []


def test_without_pyav_one_line_names_the_extra(tmp_path, tiny_model, monkeypatch, capsys):
    source = tmp_path / "clip.mkv"
    make_clip(source, frames=1, audio=False)
    monkeypatch.setitem(sys.modules, "av", None)
    assert cli.main(["upscale", str(source), "-o", str(tmp_path / "o.mkv"), "--model", str(tiny_model)]) == 1
    err = capsys.readouterr().err.strip()
    assert "realsr_fast[video]" in err and "\n" not in err


RSS_SCRIPT = """
import sys, resource
import torch
torch.set_num_threads(1)
from realsr_fast.inference.upscale_video import upscale_video
from realsr_fast.inference.upscaler import Upscaler
upscale_video(Upscaler(sys.argv[1], device="cpu", precision="fp32", backend="torch"), sys.argv[2], sys.argv[3],
              progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_clip(tmp_path, tiny_model):
    """Twice the frames, not more memory. Frames are 120 x 160 (640 x 480 out, 0.9 MB as uint8):
    the peak grows while the allocator and FFmpeg warm up over the first few dozen frames and then
    stays flat, so 48 against 96 frames must differ by less than half of what keeping the 48 extra
    output frames, even as uint8, would add (and by less than 1.2x overall)."""
    peaks = []
    for frames in (48, 96):
        source = tmp_path / f"clip{frames}.mkv"
        make_clip(source, frames=frames, height=120, width=160)
        result = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(tiny_model), str(source),
                                 str(tmp_path / f"out{frames}.mkv")], capture_output=True, text=True, check=True)
        peaks.append(int(result.stdout.split()[-1]) * 1024)  # ru_maxrss is in KiB on Linux
    assert peaks[1] < 1.2 * peaks[0], peaks
    assert peaks[1] - peaks[0] < 0.5 * 48 * 480 * 640 * 3, peaks


def test_batched_frames_and_output_size(tmp_path, tiny_model):
    """Frames batched as on a GPU (3 per call) match one at a time; --outscale sizes frames as images."""
    from realsr_fast.inference.output_size import OutputSize
    from realsr_fast.inference.upscale_video import upscale_video
    from realsr_fast.inference.upscaler import Upscaler
    from realsr_fast.inference.video_stream import VideoOptions, upscale_frames

    upscaler = Upscaler(tiny_model, device="cpu", precision="fp32", backend="torch")
    source = tmp_path / "clip.mkv"
    images = make_clip(source, frames=4, audio=False)
    batched = upscale_frames(upscaler, images[:3])
    for image, got in zip(images, batched):
        assert np.abs(got.astype(int) - upscaler.upscale_image(image).astype(int)).max() <= 1
    out = tmp_path / "half.mkv"
    assert upscale_video(upscaler, source, out, VideoOptions(codec="ffv1", pix_fmt="bgr0", batch=3, size=OutputSize(scale=2)),
                         progress=False) == 4
    frames, _ = decoded(out)
    assert frames[0].shape == (32, 48, 3)
    for image, got in zip(images, frames):
        expected = upscaler.upscale_image(image, size=(32, 48))
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_bad_video_options_are_refused(tmp_path, tiny_model, capsys):
    source = tmp_path / "clip.mkv"
    make_clip(source, frames=1, audio=False)
    base = ["upscale", str(source), "-o", str(tmp_path / "o.mkv"), "--model", str(tiny_model), "--device", "cpu"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*base, "--start", "-1"])
    assert exit_info.value.code == 2
    assert cli.main([*base, "--pix-fmt", "no-such-format", "--codec", "libx264"]) == 1
    assert "no-such-format" in capsys.readouterr().err
    assert cli.main(["upscale", str(source), "-o", str(tmp_path / "o.png"), "--model", str(tiny_model)]) == 1
    assert "written as a video" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]
