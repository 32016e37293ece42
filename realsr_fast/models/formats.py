"""Checkpoint files -> one RRDBNet state dict, whatever the layout.

Supported files (detected from their content, not their names):
- ncnn `.param` + `.bin` (either path given; the other is found next to it), see `ncnn_format`;
- PyTorch `.pth` in the official Real-SR / ESRGAN layout (`conv_first`, `RRDB_trunk.N.RDBm.convk`,
  `trunk_conv`, `upconvN`, `HRconv`, `conv_last`), the old sequential ESRGAN layout (`model.0`,
  `model.1.sub.N.RDBm.convk.0`, ...) or the Real-ESRGAN layout (`body.N.rdbm.convk`,
  `conv_body`, `conv_upN`, `conv_hr`), bare or wrapped in `params` / `params_ema`;
  always read with `torch.load(weights_only=True)`;
- safetensors: realsr_fast's own checkpoints (metadata `format=realsr_fast`, `arch=RRDBNet` and the
  constructor arguments), or any safetensors file holding one of the layouts above.

Every loader returns `(state_dict, config)` with RRDBNet's own parameter names, float32 tensors,
and the `RRDBNet(**config)` that they fit; anything else raises RealSRError saying what was expected.
"""
from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import torch

from realsr_fast.errors import RealSRError
from realsr_fast.io import atomic_path
from realsr_fast.models.ncnn_format import load_ncnn
from realsr_fast.models.rrdbnet import RRDBNet, parameter_shapes

StateDict = dict[str, torch.Tensor]
Config = dict[str, int]

#: Metadata values of realsr_fast's safetensors checkpoints (FORMAT_TAG also marks its ONNX graphs,
#: `export.onnx_export`).
FORMAT_TAG = "realsr_fast"
ARCH = "RRDBNet"
CONFIG_KEYS = ("in_nc", "out_nc", "nf", "nb", "gc", "scale")

_NCNN_MAGIC = b"7767517"
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_MAGIC = b"\x80"


def _old_layout_rules(num_upsamples: int) -> list[tuple[str, str]]:
    """Renaming rules of the old sequential ESRGAN layout (module indices depend on the scale)."""
    rules = [(r"model\.0\.", "conv_first."),
             (r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.", r"RRDB_trunk.\1.RDB\2.conv\3."),
             (r"model\.1\.sub\.\d+\.(?=weight|bias)", "trunk_conv.")]
    rules += [(rf"model\.{3 * i}\.", f"upconv{i}.") for i in range(1, num_upsamples + 1)]
    rules += [(rf"model\.{3 * num_upsamples + 2}\.", "HRconv."),
              (rf"model\.{3 * num_upsamples + 4}\.", "conv_last.")]
    return rules


_REAL_ESRGAN_RULES = [
    (r"body\.(\d+)\.rdb(\d)\.conv(\d)\.", r"RRDB_trunk.\1.RDB\2.conv\3."),
    (r"conv_body\.", "trunk_conv."),
    (r"conv_up(\d)\.", r"upconv\1."),
    (r"conv_hr\.", "HRconv."),
]


class NotRRDBNetError(RealSRError):
    """A weights file of another architecture than RRDBNet, named when recognised.

    `architecture` is what it is ("SRVGGNetCompact (Real-ESRGAN compact)", "SwinIR", ...) or None;
    `path` the file. The torch backend runs such files through spandrel when it is installed
    (`inference.spandrel_runner`); everything else refuses them with this one-line message.
    """

    def __init__(self, path: str | os.PathLike, architecture: str | None, detail: str = "") -> None:
        self.path, self.architecture = Path(path), architecture
        what = f"a {architecture}" if architecture else "not an RRDBNet"
        super().__init__(f"{path} is {what}, not an RRDBNet (ESRGAN / RealSR / Real-ESRGAN x4) generator"
                         + (f" ({detail})" if detail else "")
                         + "; the torch backend runs it when spandrel is installed (pip install spandrel)")


def describe_architecture(state: StateDict, ask_spandrel: bool = True) -> str | None:
    """Name the (non-RRDBNet) architecture of a state dict from its keys and shapes, or None.

    Recognised without any package: Real-ESRGAN's pixel-unshuffle RRDBNet (x2plus / x1), the
    SRVGGNetCompact of Real-ESRGAN's compact and anime-video models, SwinIR, HAT, SPAN and
    Real-CUGAN; with spandrel installed, any architecture it knows.
    """
    keys = set(state)
    first = state.get("conv_first.weight")
    if first is not None and first.dim() == 4 and first.shape[1] in (12, 48) and (
            "body.0.rdb1.conv1.weight" in keys or "RRDB_trunk.0.RDB1.conv1.weight" in keys):
        return f"pixel-unshuffle x{4 // int(round((first.shape[1] // 3) ** 0.5))} RRDBNet (Real-ESRGAN x2plus / x1)"
    if "body.0.weight" in keys and "body.1.weight" in keys and state["body.1.weight"].dim() == 1:
        return "SRVGGNetCompact (Real-ESRGAN compact / anime video)"
    if any(".attn.relative_position_bias_table" in key for key in keys):
        if any("overlap_attn" in key or "conv_block.cab" in key for key in keys):
            return "HAT"
        return "SwinIR"
    if any(key.startswith("block_1.c1_r.") for key in keys):
        return "SPAN"
    if any(key.startswith("unet1.") for key in keys):
        return "Real-CUGAN"
    if not ask_spandrel:
        return None
    try:
        from spandrel import MAIN_REGISTRY
    except ImportError:
        return None
    for entry in MAIN_REGISTRY.architectures():
        try:
            if entry.detect(state):
                return entry.architecture.name
        except Exception:  # a detector that trips over a foreign layout simply does not match
            continue
    return None


def detect_layout(state: StateDict) -> str:
    """Name the key layout of an (unwrapped) RRDBNet state dict: official, old or real-esrgan."""
    keys = set(state)
    if "model.0.weight" in keys:
        return "old"
    if "conv_first.weight" in keys and any(k.startswith("body.") for k in keys):
        return "real-esrgan"
    if "conv_first.weight" in keys:
        return "official"
    sample = ", ".join(sorted(keys)[:5]) or "no keys"
    raise RealSRError(
        "the checkpoint is not an RRDBNet (ESRGAN / RealSR) generator: expected keys like "
        f"'conv_first.weight', 'RRDB_trunk.0.RDB1.conv1.weight' (official), 'model.0.weight' "
        f"(old ESRGAN) or 'body.0.rdb1.conv1.weight' (Real-ESRGAN); found {sample}")


def _rename(state: StateDict, rules: list[tuple[str, str]]) -> StateDict:
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            new_key, count = re.subn(rf"^{pattern}", replacement, key)
            if count:
                key = new_key
                break
        renamed[key] = value
    return renamed


def to_official_layout(state: StateDict) -> StateDict:
    """Rename the keys of any supported layout to RRDBNet's own (the official Real-SR) names."""
    layout = detect_layout(state)
    if layout == "official":
        return dict(state)
    if layout == "real-esrgan":
        return _rename(state, _REAL_ESRGAN_RULES)
    # Old layout: the module indices of HRconv and conv_last depend on the number of upconvs,
    # which is the number of indices above 1 that hold a weight, minus those two.
    indices = {int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.weight$", k))}
    num_upsamples = max(len(indices - {0, 1}) - 2, 0)
    return _rename(state, _old_layout_rules(num_upsamples))


def infer_config(state: StateDict) -> Config:
    """RRDBNet's constructor arguments from an official-layout state dict's shapes."""
    try:
        first, last = state["conv_first.weight"], state["conv_last.weight"]
    except KeyError as exc:
        raise RealSRError(f"the checkpoint lacks {exc.args[0]!r}; it is not a complete RRDBNet "
                          "generator") from exc
    if first.dim() != 4 or last.dim() != 4:
        raise RealSRError(f"conv_first.weight {tuple(first.shape)} and conv_last.weight "
                          f"{tuple(last.shape)} should be 4-D convolution weights")
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"RRDB_trunk\.(\d+)\.", k))}
    upconvs = {int(m.group(1)) for k in state if (m := re.match(r"upconv(\d+)\.weight$", k))}
    gc = state.get("RRDB_trunk.0.RDB1.conv1.weight", torch.empty(32))
    return {"in_nc": first.shape[1], "out_nc": last.shape[0], "nf": first.shape[0],
            "nb": len(blocks), "gc": gc.shape[0], "scale": 2 ** len(upconvs)}


def check_state_dict(state: StateDict, config: Config, source: str | os.PathLike) -> StateDict:
    """Check names and shapes against `RRDBNet(**config)`; return the state as float32."""
    expected = parameter_shapes(**config)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(shape)})"
             for k, shape in expected.items() if k in state and state[k].shape != shape]
    if missing or unexpected or wrong:
        problems = []
        for label, items in (("missing", missing), ("unexpected", unexpected),
                             ("wrong shape", wrong)):
            if items:
                more = f" and {len(items) - 3} more" if len(items) > 3 else ""
                problems.append(f"{label}: {', '.join(items[:3])}{more}")
        raise RealSRError(f"{source} does not fit RRDBNet({_describe(config)}): "
                          + "; ".join(problems))
    return {k: state[k].detach().to(torch.float32).contiguous() for k in expected}


def _describe(config: Config) -> str:
    return ", ".join(f"{k}={config[k]}" for k in CONFIG_KEYS)


def _unwrap(checkpoint: object, path: str | os.PathLike) -> StateDict:
    """The tensor dict inside a `.pth` object (Real-ESRGAN wraps it in params_ema / params)."""
    if isinstance(checkpoint, dict):
        for wrapper in ("params_ema", "params"):
            if isinstance(checkpoint.get(wrapper), dict):
                checkpoint = checkpoint[wrapper]
                break
    if not isinstance(checkpoint, dict) or not all(
            isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise RealSRError(f"{path} does not hold a state dict of tensors (or one wrapped in "
                          "'params' / 'params_ema')")
    return {k.removeprefix("module."): v for k, v in checkpoint.items()}


def _from_layout(state: StateDict, path: str | os.PathLike) -> tuple[StateDict, Config]:
    architecture = describe_architecture(state, ask_spandrel=False)
    if architecture is not None:
        raise NotRRDBNetError(path, architecture)
    try:
        state = to_official_layout(state)
    except RealSRError:  # no RRDBNet layout: name what it is, if anyone knows
        raise NotRRDBNetError(path, describe_architecture(state)) from None
    config = infer_config(state)
    if config["in_nc"] != config["out_nc"]:
        raise NotRRDBNetError(path, f"RRDBNet taking {config['in_nc']} channels to {config['out_nc']}")
    return check_state_dict(state, config, path), config


def load_pth(path: str | os.PathLike) -> tuple[StateDict, Config]:
    """Read a PyTorch checkpoint (any supported layout) with `weights_only=True`."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise RealSRError(f"cannot read {path} as a PyTorch checkpoint (truncated, corrupt, or "
                          f"holding more than tensors): {str(exc).splitlines()[0]}") from exc
    return _from_layout(_unwrap(checkpoint, path), path)


def load_safetensors(path: str | os.PathLike) -> tuple[StateDict, Config]:
    """Read a safetensors file: realsr_fast's own (with metadata) or any supported layout."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise RealSRError(f"cannot read {path} as safetensors (truncated or corrupt?): "
                          f"{exc}") from exc
    if metadata.get("format") != FORMAT_TAG:
        return _from_layout(state, path)
    if metadata.get("arch") != ARCH:
        raise RealSRError(f"{path} holds a {metadata.get('arch')!r} checkpoint; expected {ARCH}")
    try:
        config = {k: int(metadata[k]) for k in CONFIG_KEYS}
    except (KeyError, ValueError) as exc:
        raise RealSRError(f"{path}: metadata lacks a valid {exc}; expected integers for "
                          f"{', '.join(CONFIG_KEYS)}") from exc
    return check_state_dict(state, config, path), config


def save_safetensors(path: str | os.PathLike, state: StateDict, config: Config,
                     extra_metadata: dict[str, str] | None = None) -> None:
    """Write a realsr_fast checkpoint atomically (`io.atomic_path`)."""
    from safetensors.torch import save_file

    path = Path(path)
    state = check_state_dict(state, config, path)
    metadata = {"format": FORMAT_TAG, "arch": ARCH, **{k: str(config[k]) for k in CONFIG_KEYS},
                **(extra_metadata or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        save_file(state, str(temporary), metadata=metadata)


def ncnn_pair(path: Path) -> tuple[Path, Path]:
    """The (.param, .bin) files beside `path` (either one named); RealSRError if one is missing."""
    param, weights = path.with_suffix(".param"), path.with_suffix(".bin")
    for needed in (param, weights):
        if not needed.is_file():
            raise RealSRError(f"an ncnn model needs both {param.name} and {weights.name} in "
                              f"{path.parent}; {needed.name} is missing")
    return param, weights


def _is_safetensors(head: bytes) -> bool:
    """Safetensors files start with the header length (u64, little endian) then '{'."""
    return len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] > 0


def load_checkpoint(path: str | os.PathLike) -> tuple[StateDict, Config]:
    """Read any supported weights file into (RRDBNet state dict, RRDBNet config)."""
    path = Path(path)
    if not path.is_file():
        raise RealSRError(f"weights file {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise RealSRError(f"weights file {path} is empty")
    if head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_MAGIC):
        return load_pth(path)  # also a PyTorch file named .bin (pytorch_model.bin)
    if head.startswith(_NCNN_MAGIC) or path.suffix.lower() == ".bin":
        return load_ncnn(*ncnn_pair(path))
    if _is_safetensors(head):
        return load_safetensors(path)
    raise RealSRError(f"{path} is not a weights file this package reads: expected an ncnn "
                      ".param/.bin pair, a PyTorch .pth checkpoint or a .safetensors file")


def model_from_state(state: StateDict, config: Config) -> RRDBNet:
    """An RRDBNet in eval mode holding `state`'s tensors (no random init is computed first)."""
    with torch.device("meta"):
        model = RRDBNet(**config)
    model.load_state_dict(state, assign=True)
    return model.eval()
