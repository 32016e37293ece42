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

Release archives (a zip holding an ncnn model's .param and .bin among other files) go through
`fetch_archive_members`: the archive and each extracted member are hash-checked, and the members
appear together in their folder by one rename, or not at all. A file whose SHA-256 is not pinned
(`PretrainedFile.pinned` false) is never downloaded: the error says where to fetch it by hand.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from realsr_fast.errors import RealSRError

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
    def pinned(self) -> bool:
        """Whether a hash to check the download against is known (a full sha256 or a name prefix)."""
        return bool(self.sha256) or re.search(r"-([0-9a-f]{8,64})\.[^.]+$", self.name) is not None

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
    import torch  # here, not at the top: the CLI reads OFFLINE_ENV for its help without torch

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
    _refuse_unpinned(file, by_hand)
    if offline():
        raise RealSRError(f"{file.what} ({file.name}) are not in the torch hub cache and {OFFLINE_ENV} "
                          f"forbids downloading them: {by_hand}")
    url = _source_url(file)
    target.parent.mkdir(parents=True, exist_ok=True)
    from realsr_fast.io import atomic_write  # here: numpy and Pillow are not needed for the CLI's help

    with atomic_write(target) as sink:  # removes the partial file on any error
        digest = _download(url, sink, file, progress)
        if not digest.startswith(file.expected_hash):
            raise RealSRError(f"the download of {file.name} from {url} is corrupt: its SHA-256 is "
                              f"{digest[:16]}..., expected {file.expected_hash[:16]}...; nothing was "
                              f"kept. Try again, or {by_hand}")
    return target


def _refuse_unpinned(file: PretrainedFile, by_hand: str) -> None:
    if not file.pinned:
        raise RealSRError(f"{file.what} ({file.name}) are not downloaded: this version of realsr_fast has no "
                          f"SHA-256 pinned for them to check the download against; {by_hand} after checking "
                          "it yourself, or give its path instead of its name")


@dataclass(frozen=True)
class ArchiveMember:
    """A file inside a release zip: its path there, the name it gets when extracted, its SHA-256."""

    path: str
    name: str
    sha256: str


def fetch_archive_members(archive: PretrainedFile, members: Sequence[ArchiveMember], folder: str | os.PathLike,
                          *, progress: bool = True) -> Path:
    """`folder` holding `members` of the zip `archive`, downloading and extracting them first when missing.

    The archive is downloaded to a temporary file beside `folder` and checked against its hash,
    each member is checked against its own SHA-256 while it is extracted into a hidden temporary
    folder, and that folder is renamed to `folder` in one step; the archive is then deleted. An
    existing `folder` is complete, as it only ever appears whole.

    Raises:
        RealSRError: an unpinned archive, offline mode, a failed / cut / corrupt download, a
            member missing or hashing wrong; nothing is left behind.
    """
    folder = Path(folder)
    if folder.is_dir() and all((folder / member.name).is_file() for member in members):
        return folder
    names = " and ".join(member.path for member in members)
    by_hand = f"fetch {archive.url} on a connected machine and copy {names} out of it into {folder}"
    _refuse_unpinned(archive, by_hand)
    if offline():
        raise RealSRError(f"{archive.what} are not in {folder} and {OFFLINE_ENV} forbids downloading them: {by_hand}")
    url = _source_url(archive)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError as exc:
        raise RealSRError(f"cannot write in {folder.parent} ({exc.strerror or exc}); set REALSR_FAST_HOME to "
                          "a writable folder") from None
    try:
        zipped = staging / archive.name
        with open(zipped, "wb") as sink:
            digest = _download(url, sink, archive, progress)
        if not digest.startswith(archive.expected_hash):
            raise RealSRError(f"the download of {archive.name} from {url} is corrupt: its SHA-256 is {digest[:16]}..., "
                              f"expected {archive.expected_hash[:16]}...; nothing was kept. Try again, or {by_hand}")
        extracted = staging / "members"
        extracted.mkdir()
        _extract_checked(zipped, members, extracted, archive, by_hand)
        os.replace(extracted, folder)
    except OSError as exc:
        raise RealSRError(f"cannot extract {archive.name} into {folder}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _extract_checked(zipped: Path, members: Sequence[ArchiveMember], into: Path, archive: PretrainedFile,
                     by_hand: str) -> None:
    """Copy each member out of the zip into `into`, hashing it on the way; RealSRError on a mismatch."""
    try:
        with zipfile.ZipFile(zipped) as bundle:
            for member in members:
                try:
                    source = bundle.open(member.path)
                except KeyError:
                    raise RealSRError(f"{archive.name} has no {member.path}; it is not the expected release. "
                                      f"{by_hand[0].upper()}{by_hand[1:]}") from None
                digest = hashlib.sha256()
                with source, open(into / member.name, "wb") as sink:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        sink.write(chunk)
                if digest.hexdigest() != member.sha256.lower():
                    raise RealSRError(f"{member.path} in {archive.name} has SHA-256 {digest.hexdigest()[:16]}..., expected "
                                      f"{member.sha256[:16]}...; nothing was kept. {by_hand[0].upper()}{by_hand[1:]}")
    except zipfile.BadZipFile as exc:
        raise RealSRError(f"{archive.name} is not a readable zip ({exc}); nothing was kept") from None


def _source_url(file: PretrainedFile) -> str:
    mirror = os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/{file.name}" if mirror else file.url


def _download(url: str, sink, file: PretrainedFile, progress: bool) -> str:
    """Stream `url` into `sink`; the SHA-256 hex digest of what arrived. Network trouble -> RealSRError."""
    import http.client  # here, like torch and tqdm: the CLI reads OFFLINE_ENV for its help
    import urllib.error
    import urllib.request

    by_hand = f"or fetch {file.url} by hand into {hub_checkpoint_path(file).parent}"
    digest, received, expected = hashlib.sha256(), 0, None
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            if response.headers.get_content_type() == "text/html":
                raise RealSRError(f"{url} sent a web page instead of {file.name} (a download site asking for a "
                                  f"confirmation); {by_hand.removeprefix('or ')}")
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            from tqdm import tqdm

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
