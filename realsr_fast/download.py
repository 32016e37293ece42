"""Standard pretrained weights fetched on first use: hash-checked, atomic, with an offline switch.

Only files that users expect a tool to download (torchvision's ImageNet VGG19 for the perceptual
loss, AlexNet for LPIPS, ESRGAN's PSNR x4 generator where RealSR's training starts) come through
here; the main job (upscaling with the bundled model), the demo and the tests never call it. Files
land in torch's hub cache (`<torch hub dir>/checkpoints`), where torchvision itself looks, so a
file fetched once serves both.

The check follows torchvision's convention: the name ends in the first hex digits of the file's
SHA-256 (`vgg19-dcbb9e9d.pth`), and the download must hash to them. The data goes to a temporary
file beside the target and is renamed only after the length and hash check, so a failed, cut or
corrupt download leaves nothing behind.

Environment:
    REALSR_OFFLINE=1          never download: a missing file is an error naming it and where it goes
    REALSR_WEIGHTS_MIRROR=URL fetch `URL/<file name>` instead of the upstream address (a local mirror)
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from realsr_fast.errors import RealSRError
from realsr_fast.io import atomic_write

OFFLINE_ENV = "REALSR_OFFLINE"
MIRROR_ENV = "REALSR_WEIGHTS_MIRROR"
_CHUNK = 1 << 20
_TIMEOUT_S = 30


@dataclass(frozen=True)
class PretrainedFile:
    """A weights file known by name, address and hash.

    Attributes:
        name: file name in the hub cache; for torchvision files it ends in `-<sha256 prefix>.<ext>`.
        url: where upstream publishes it.
        what: what the file is, for messages ("torchvision's ImageNet VGG19 weights").
        sha256: the full SHA-256 when known; otherwise the prefix in `name` is checked.
    """

    name: str
    url: str
    what: str
    sha256: str | None = None

    @property
    def expected_hash(self) -> str:
        """The hex digest (or its prefix) the file must hash to."""
        if self.sha256:
            return self.sha256.lower()
        match = re.search(r"-([0-9a-f]{8,64})\.[^.]+$", self.name)
        if match is None:
            raise ValueError(f"{self.name} carries no hash prefix and no sha256 was given")
        return match.group(1)


VGG19 = PretrainedFile("vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
                       "torchvision's ImageNet VGG19 weights")
ALEXNET = PretrainedFile("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
                         "torchvision's ImageNet AlexNet weights (for LPIPS)")

#: ESRGAN's PSNR-oriented x4 RRDBNet (xinntao/ESRGAN `RRDB_PSNR_x4.pth`, as BasicSR republishes it
#: under its model-zoo name, whose suffix is the SHA-256 prefix): where RealSR's training starts.
# BasicSR publishes this file on Google Drive only (scripts/download_pretrained_models.py, file id
# below); Drive answers large files with a confirmation page, which `_download` reports as such.
ESRGAN_PSNR_X4 = PretrainedFile(
    "ESRGAN_PSNR_SRx4_DF2K_official-150ff491.pth",
    "https://drive.google.com/uc?export=download&id=1swaV5iBMFfg-DL6ZyiARztbhutDCWXMM",
    "ESRGAN's PSNR-oriented x4 generator weights (RRDB_PSNR_x4, BasicSR's copy)")


def hub_checkpoint_path(file: PretrainedFile) -> Path:
    """Where torch's hub cache keeps `file`: `<torch hub dir>/checkpoints/<name>`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / file.name


def offline() -> bool:
    """True when REALSR_OFFLINE is set to a true value (1, true, yes, on)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def fetch_pretrained(file: PretrainedFile, *, progress: bool = True) -> Path:
    """The cached path of `file`, downloading it first when it is not in the hub cache.

    Raises:
        RealSRError: offline mode with no cached file, or a download that failed, was cut short
            or hashed wrong (nothing is left behind); the message names the file, where it goes
            and the address to fetch it from by hand.
    """
    target = hub_checkpoint_path(file)
    if target.is_file():
        return target
    by_hand = f"fetch {file.url} on a connected machine and copy it to {target}"
    if offline():
        raise RealSRError(f"{file.what} ({file.name}) are not in the torch hub cache and {OFFLINE_ENV} "
                          f"forbids downloading them: {by_hand}")
    url = _source_url(file)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(target) as sink:  # removes the partial file on any error
        digest = _download(url, sink, file, progress)
        if not digest.startswith(file.expected_hash):
            raise RealSRError(f"the download of {file.name} from {url} is corrupt: its SHA-256 is "
                              f"{digest[:16]}..., expected {file.expected_hash[:16]}...; nothing was "
                              f"kept. Try again, or {by_hand}")
    return target


def _source_url(file: PretrainedFile) -> str:
    mirror = os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/{file.name}" if mirror else file.url


def _download(url: str, sink, file: PretrainedFile, progress: bool) -> str:
    """Stream `url` into `sink`; the SHA-256 hex digest of what arrived. Network trouble -> RealSRError."""
    by_hand = f"or fetch {file.url} by hand into {hub_checkpoint_path(file).parent}"
    digest, received, expected = hashlib.sha256(), 0, None
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            if response.headers.get_content_type() == "text/html":
                raise RealSRError(f"{url} sent a web page instead of {file.name} (a download site asking for a "
                                  f"confirmation); {by_hand.removeprefix('or ')}")
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            with tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
                      desc=f"downloading {file.name}", leave=False) as bar:
                while chunk := response.read(_CHUNK):
                    sink.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise RealSRError(f"cannot download {file.what} from {url}: HTTP {exc.code} {exc.reason}; "
                          f"set {OFFLINE_ENV}=1 to work offline, {by_hand}") from None
    except http.client.IncompleteRead as exc:  # the server closed before Content-Length bytes
        received += len(exc.partial)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise RealSRError(f"cannot download {file.what} from {url} ({reason}): is the network up? "
                          f"Set {OFFLINE_ENV}=1 to work offline, {by_hand}") from None
    if expected is not None and received != expected:
        raise RealSRError(f"the download of {file.name} from {url} was cut short ({received} of {expected} "
                          f"bytes); nothing was kept. Try again, {by_hand}")
    return digest.hexdigest()
