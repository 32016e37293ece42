"""Pretrained weights fetched on first use, for real, from an HTTP server on 127.0.0.1 (no network).

The server is started by each test and serves: a good file, a truncated one (Content-Length larger
than the body), one whose bytes do not match the hash in its name, and nothing at all (a port
that nobody listens on).
"""
from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest
import torch

from realsr_fast import download
from realsr_fast.commands import arguments
from realsr_fast.download import ALEXNET, VGG19, PretrainedFile, fetch_pretrained, hub_checkpoint_path
from realsr_fast.errors import RealSRError


def _named(payload: bytes, stem: str = "net") -> PretrainedFile:
    """A file named the torchvision way: its name carries its SHA-256 prefix."""
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    return PretrainedFile(f"{stem}-{prefix}.pth", f"https://example.invalid/{stem}-{prefix}.pth", "test weights")


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    truncate: set[str] = set()
    html: set[str] = set()

    def do_GET(self):  # noqa: N802 (http.server's name)
        name = self.path.lstrip("/")
        if name not in self.files:
            self.send_error(404)
            return
        body = self.files[name]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if name in self.html:
            self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(body[: len(body) // 3] if name in self.truncate else body)
        self.wfile.flush()
        if name in self.truncate:
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch, tmp_path):
    """A mirror on 127.0.0.1 (REALSR_WEIGHTS_MIRROR points at it), downloads allowed, hub in tmp_path."""
    handler = type("Handler", (_Handler,), {"files": {}, "truncate": set(), "html": set()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv(download.MIRROR_ENV, f"http://127.0.0.1:{httpd.server_address[1]}")
    monkeypatch.delenv(download.OFFLINE_ENV, raising=False)
    yield handler
    httpd.shutdown()
    httpd.server_close()


def _leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else []


def test_good_file_is_fetched_once_and_kept(server, rng):
    payload = rng.bytes(3 << 20)  # several read chunks
    file = _named(payload)
    server.files[file.name] = payload
    path = fetch_pretrained(file, progress=False)
    assert path == hub_checkpoint_path(file) and path.read_bytes() == payload
    assert _leftovers(path) == [file.name]
    server.files.clear()  # a second call must not ask the server again
    assert fetch_pretrained(file, progress=False) == path


def test_truncated_download_leaves_nothing(server, rng):
    payload = rng.bytes(300_000)
    file = _named(payload)
    server.files[file.name] = payload
    server.truncate.add(file.name)
    with pytest.raises(RealSRError, match="cut short") as info:
        fetch_pretrained(file, progress=False)
    assert "nothing was kept" in str(info.value)
    assert _leftovers(hub_checkpoint_path(file)) == []


def test_wrong_hash_leaves_nothing(server, rng):
    file = _named(b"the real weights")
    server.files[file.name] = rng.bytes(1000)
    with pytest.raises(RealSRError, match="corrupt") as info:
        fetch_pretrained(file, progress=False)
    assert file.expected_hash in str(info.value)
    assert _leftovers(hub_checkpoint_path(file)) == []


def test_a_web_page_instead_of_the_file_is_named_as_such(server):
    """Download sites that ask to confirm large files answer with a page: say so, keep nothing."""
    file = _named(b"weights")
    server.files[file.name] = b"<html>confirm the download</html>"
    server.html.add(file.name)
    with pytest.raises(RealSRError, match="web page instead of") as info:
        fetch_pretrained(file, progress=False)
    assert str(hub_checkpoint_path(file).parent) in str(info.value)
    assert _leftovers(hub_checkpoint_path(file)) == []


def test_full_sha256_is_checked_when_given(server, rng):
    payload = rng.bytes(1000)
    good = PretrainedFile("plain.bin", "https://example.invalid/plain.bin", "test", hashlib.sha256(payload).hexdigest())
    bad = PretrainedFile("other.bin", "https://example.invalid/other.bin", "test", "0" * 64)
    server.files.update({good.name: payload, bad.name: payload})
    assert fetch_pretrained(good, progress=False).read_bytes() == payload
    with pytest.raises(RealSRError, match="corrupt"):
        fetch_pretrained(bad, progress=False)


def test_missing_file_and_server_down_say_what_to_do(server, monkeypatch):
    file = _named(b"x")
    with pytest.raises(RealSRError, match="HTTP 404") as info:
        fetch_pretrained(file, progress=False)
    assert file.url in str(info.value) and str(hub_checkpoint_path(file).parent) in str(info.value)
    with socket.socket() as probe:  # a port that nobody listens on once this block ends
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(download.MIRROR_ENV, f"http://127.0.0.1:{port}")
    with pytest.raises(RealSRError, match="is the network up") as info:
        fetch_pretrained(file, progress=False)
    assert download.OFFLINE_ENV in str(info.value)
    assert _leftovers(hub_checkpoint_path(file)) == []


def test_offline_switch_names_the_file_and_place(server, monkeypatch):
    payload = b"weights"
    file = _named(payload)
    server.files[file.name] = payload
    monkeypatch.setenv(download.OFFLINE_ENV, "1")
    with pytest.raises(RealSRError, match=download.OFFLINE_ENV) as info:
        fetch_pretrained(file, progress=False)
    assert file.url in str(info.value) and str(hub_checkpoint_path(file)) in str(info.value)
    monkeypatch.delenv(download.OFFLINE_ENV)
    parser = __import__("argparse").ArgumentParser()
    arguments.add_offline_argument(parser)
    arguments.apply_offline(parser.parse_args(["--offline"]))
    assert download.offline()


def test_vgg_weights_arrive_through_the_fetcher(server, monkeypatch, tmp_path):
    """The perceptual loss's VGG19 comes from the cache after a download, in torchvision's layout."""
    from realsr_fast.models import vgg

    source = vgg.build_vgg(random_init_for_tests=True)
    state_path = tmp_path / "vgg.pth"
    torch.save({f"features.{k}": v for k, v in source.features.state_dict().items()}, state_path)
    payload = state_path.read_bytes()
    file = _named(payload, "vgg19")
    server.files[file.name] = payload
    monkeypatch.setattr(vgg, "VGG19", file)
    net = vgg.build_vgg()
    assert torch.equal(net.features[34].weight, source.features[34].weight)
    assert hub_checkpoint_path(file).is_file()


def test_known_files_are_torchvisions():
    """Our table names the very files torchvision (and so `lpips`) looks for in the hub cache."""
    from torchvision.models import AlexNet_Weights, VGG19_Weights

    assert VGG19.url == VGG19_Weights.IMAGENET1K_V1.url
    assert ALEXNET.url == AlexNet_Weights.IMAGENET1K_V1.url
    assert VGG19.expected_hash == "dcbb9e9d" and ALEXNET.expected_hash == "7be5be79"
