"""ONNX export and the ONNX Runtime backend, against the torch model on real photo crops.

Most tests use a tiny seeded RRDBNet (fast); one (slow) exports the real df2k weights.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from realsr_fast import cli
from realsr_fast.errors import RealSRError
from realsr_fast.export.onnx_export import OnnxInfo, export_onnx, read_onnx_info
from realsr_fast.export.precision import (
    FP16_MAX,
    HEADROOM,
    activation_peaks,
    mixed_precision,
    overflowing_units,
    unit_names,
)
from realsr_fast.models.formats import save_safetensors
from realsr_fast.models.loading import weights_sha256
from realsr_fast.models.rrdbnet import RRDBNet

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
skimage_data = pytest.importorskip("skimage.data")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two arrays in [0, 1] (numpy, from the definition)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def photo_crops(height: int, width: int) -> torch.Tensor:
    """(2, 3, height, width) float32 crops of two real photos."""
    crops = [skimage_data.astronaut()[40:40 + height, 180:180 + width],
             skimage_data.coffee()[120:120 + height, 250:250 + width]]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def tiny() -> RRDBNet:
    torch.manual_seed(11)
    return RRDBNet(nf=8, nb=2, gc=4).eval()


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": x})[0]


@pytest.fixture(scope="module")
def fp32_graph(tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny_fp32.onnx"
    return path, export_onnx(tiny, path, tile_pad=7)


def test_fp32_graph_is_valid_with_dynamic_shapes_and_metadata(tiny, fp32_graph):
    path, info = fp32_graph
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["scale"] == "4" and meta["tile_pad"] == "7" and meta["precision"] == "fp32"
    assert meta["model_sha256"] == weights_sha256(tiny.state_dict())
    assert read_onnx_info(path) == info


@pytest.mark.parametrize("size", [(24, 32), (37, 19)])
def test_onnx_matches_torch_on_photo_crops_at_two_sizes(tiny, fp32_graph, size):
    x = photo_crops(*size)
    with torch.no_grad():
        expected = tiny(x).clamp(0, 1).numpy()
    got = np.clip(run_onnx(fp32_graph[0], x.numpy()), 0, 1)
    assert got.shape == (2, 3, 4 * size[0], 4 * size[1])
    assert psnr(got, expected) >= 50


def cast_targets(proto) -> list[int]:
    return [next(a.i for a in node.attribute if a.name == "to")
            for node in proto.graph.node if node.op_type == "Cast"]


def conv_weight_types(proto) -> dict[str, int]:
    """Conv node name -> element type of its weight initializer."""
    types = {init.name: init.data_type for init in proto.graph.initializer}
    return {node.name: types[node.input[1]] for node in proto.graph.node if node.op_type == "Conv"}


def test_fp16_graph_has_fp32_io_explicit_casts_and_fp16_convs(tiny, tmp_path):
    path = tmp_path / "fp16.onnx"
    info = export_onnx(tiny, path, precision="fp16", fp32_units=[])
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert proto.graph.input[0].type.tensor_type.elem_type == FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == FLOAT
    assert cast_targets(proto) == [FLOAT16, FLOAT]  # in at the start, out at the end
    assert set(conv_weight_types(proto).values()) == {FLOAT16}
    assert info.fp32_units == () and read_onnx_info(path).precision == "fp16"
    x = photo_crops(20, 28)
    with torch.no_grad():
        expected = tiny(x).clamp(0, 1).numpy()
    assert psnr(np.clip(run_onnx(path, x.numpy()), 0, 1), expected) >= 40


def test_fp32_graph_with_fp16_io_computes_in_fp32(tiny, tmp_path):
    """precision fp32 with io_dtype fp16: fp16 only at the edges, every conv fp32."""
    path = tmp_path / "fp32_io16.onnx"
    info = export_onnx(tiny, path, precision="fp32", io_dtype="fp16")
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert proto.graph.input[0].type.tensor_type.elem_type == FLOAT16
    assert proto.graph.output[0].type.tensor_type.elem_type == FLOAT16
    assert set(conv_weight_types(proto).values()) == {FLOAT}
    assert info.precision == "fp32" and info.fp32_units == ()
    x = photo_crops(16, 20).half()
    with torch.no_grad():
        expected = tiny(x.float()).numpy()
    got = run_onnx(path, x.numpy()).astype(np.float32)
    # only the fp16 rounding of the output is left (fp16 compute would err ~10x more)
    assert np.abs(got - expected).max() <= 2 * np.abs(expected).max() * 2.0 ** -11


def test_fp32_units_keep_their_convs_in_fp32(tiny, tmp_path):
    path = tmp_path / "mixed.onnx"
    keep = ["trunk_conv", "upconv1"]
    export_onnx(tiny, path, precision="fp16", fp32_units=keep)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    for name, dtype in conv_weight_types(proto).items():
        in_kept_unit = any(f"/{unit}/" in name for unit in keep)
        assert dtype == (onnx.TensorProto.FLOAT if in_kept_unit else onnx.TensorProto.FLOAT16), name
    x = photo_crops(16, 16)
    with torch.no_grad():
        expected = tiny(x).numpy()
    assert np.abs(run_onnx(path, x.numpy()) - expected).max() < 5e-3


def test_activation_peaks_match_a_direct_computation(tiny):
    x = photo_crops(12, 12)
    peaks = activation_peaks(tiny, x)
    assert list(peaks) == unit_names(tiny)
    with torch.no_grad():
        first = tiny.conv_first(x)
        last_in = tiny.RRDB_trunk(first)
    # a unit's peak covers its input (cast to the unit's dtype) and its output
    assert peaks["conv_first"] == pytest.approx(max(float(first.abs().max()), float(x.abs().max())), rel=1e-6)
    # a unit's peak covers its inner convs, so it is at least its output's
    assert peaks[f"RRDB_trunk.{len(tiny.RRDB_trunk) - 1}"] >= float(last_in.abs().max()) * (1 - 1e-6)


def overflowing_copy(tiny: RRDBNet) -> RRDBNet:
    """tiny with activations far past fp16's range from upconv1 on (the weights themselves still
    fit fp16): the units before upconv1 are safe in fp16, upconv1 and later ones are not."""
    hot = RRDBNet(nf=8, nb=2, gc=4).eval()
    hot.load_state_dict(tiny.state_dict())
    with torch.no_grad():
        hot.upconv1.weight.mul_(3e4)
        hot.HRconv.weight.mul_(3e4)
    return hot


def test_overflowing_units_are_measured_and_kept_in_fp32(tiny):
    hot = overflowing_copy(tiny)
    x = photo_crops(8, 8)
    units = overflowing_units(activation_peaks(hot, x))
    assert "upconv1" in units and "conv_first" not in units and "RRDB_trunk.0" not in units
    with torch.no_grad():
        all_fp16 = mixed_precision(hot, [])(x)
        mixed = mixed_precision(hot, units)(x)
        reference = hot(x)
    assert not torch.isfinite(all_fp16).all()  # the failure the measurement prevents
    assert torch.isfinite(mixed).all()
    assert torch.allclose(mixed, reference, rtol=2e-2, atol=2e-2 * float(reference.abs().max()))
    assert overflowing_units({"a": FP16_MAX / HEADROOM * 0.99, "b": FP16_MAX / HEADROOM}) == ["b"]


def test_fp16_unit_after_an_fp32_island_gets_a_representable_input(tiny):
    """upconv1 outputs ~1e6 (kept fp32); upconv2 scales it back down, so its own activations are
    small - but its input cannot be cast to fp16, so it stays fp32 too."""
    hot = RRDBNet(nf=8, nb=2, gc=4).eval()
    hot.load_state_dict(tiny.state_dict())
    with torch.no_grad():
        hot.upconv1.weight.mul_(1e6)
        hot.upconv1.bias.mul_(1e6)
        hot.upconv2.weight.div_(1e6)
    x = photo_crops(8, 8)
    units = overflowing_units(activation_peaks(hot, x))
    with torch.no_grad():
        assert torch.isfinite(hot(x)).all()
        assert torch.isfinite(mixed_precision(hot, units)(x)).all(), units
    assert {"upconv1", "upconv2"} <= set(units) and "HRconv" not in units


def test_weights_hash_depends_on_values_not_order(tiny):
    state = tiny.state_dict()
    reordered = dict(reversed(list(state.items())))
    assert weights_sha256(reordered) == weights_sha256(state)
    changed = dict(state)
    changed["conv_last.bias"] = state["conv_last.bias"] + 1e-3
    assert weights_sha256(changed) != weights_sha256(state)


def test_foreign_onnx_file_is_refused(tmp_path):
    path = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 3, 1), (torch.rand(1, 3, 4, 4),), str(path),
                      dynamo=False, opset_version=17)
    with pytest.raises(RealSRError, match="not an ONNX model exported by realsr_fast"):
        read_onnx_info(path)
    with pytest.raises(RealSRError, match="does not exist"):
        read_onnx_info(tmp_path / "missing.onnx")


def test_export_argument_errors(tiny, tmp_path):
    with pytest.raises(RealSRError, match="precision"):
        export_onnx(tiny, tmp_path / "x.onnx", precision="int8")
    with pytest.raises(RealSRError, match="opset"):
        export_onnx(tiny, tmp_path / "x.onnx", opset=13)
    assert not (tmp_path / "x.onnx").exists()


def test_cli_export_then_upscale_with_onnx_backend_matches_torch(tiny, tmp_path):
    """`realsr export onnx` + `realsr upscale --backend onnx` (tiled) vs the torch Upscaler."""
    from realsr_fast.inference.upscaler import Upscaler
    from realsr_fast.io import read_image, write_image

    weights = tmp_path / "tiny.safetensors"
    save_safetensors(weights, tiny.state_dict(), tiny.config())
    graph = tmp_path / "tiny.onnx"
    assert cli.main(["export", "onnx", "--model", str(weights), "-o", str(graph)]) == 0
    image = skimage_data.chelsea()[60:100, 120:170].copy()  # 40 x 50
    write_image(tmp_path / "in.png", image)
    out = tmp_path / "out.png"
    assert cli.main(["upscale", str(tmp_path / "in.png"), "-o", str(out), "--backend", "onnx",
                     "--onnx", str(graph), "--tile", "16", "--tile-pad", "4"]) == 0
    expected = Upscaler(weights, device="cpu", precision="fp32", tile=16, tile_pad=4)(image)
    got = read_image(out)
    assert got.shape == (160, 200, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_onnx_option_needs_the_onnx_backend(tmp_path):
    from realsr_fast.inference.backends import UpscalerSettings

    with pytest.raises(RealSRError, match="--backend onnx"):
        UpscalerSettings(options={"onnx": tmp_path / "m.onnx"})


@pytest.mark.slow
def test_df2k_onnx_matches_torch_on_a_photo_crop(tmp_path):
    """The real DF2K weights: fp32 ONNX vs torch, PSNR >= 50 dB at two sizes."""
    from realsr_fast.models.loading import load_model

    model = load_model("df2k")
    sha = weights_sha256(model.state_dict())
    path = tmp_path / "df2k.onnx"
    assert export_onnx(model, path).model_sha256 == sha
    onnx.checker.check_model(str(path))
    for size in [(24, 24), (20, 32)]:
        x = photo_crops(*size)[:1]
        with torch.no_grad():
            expected = model(x).clamp(0, 1).numpy()
        assert psnr(np.clip(run_onnx(path, x.numpy()), 0, 1), expected) >= 50


def check_fp16_convs_follow_units(path) -> tuple[OnnxInfo, int]:
    """A valid fp16 graph whose convs are fp32 inside its recorded fp32 units and fp16 elsewhere;
    returns its metadata and its number of convs."""
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    info = read_onnx_info(path)
    assert info.precision == "fp16"
    types = conv_weight_types(proto)
    for name, dtype in types.items():
        in_kept_unit = any(f"/{unit}/" in name for unit in info.fp32_units)
        assert dtype == (onnx.TensorProto.FLOAT if in_kept_unit else onnx.TensorProto.FLOAT16), name
    return info, len(types)


def test_cli_exports_fp16_with_automatic_fp32_islands(tiny, tmp_path):
    """The fast twin of the df2k export below, on a tiny RRDBNet with df2k's units whose upconv1
    overflows fp16: `realsr export onnx --precision fp16` measures the units itself (calibration
    images, no fp32_units given), keeps the hot ones in fp32, and the graph matches fp32 torch.
    (That the same model overflows without islands is shown in torch above: ONNX Runtime's CPU
    provider runs fp16 convs in fp32, so it cannot show it.)"""
    hot = overflowing_copy(tiny)
    weights = tmp_path / "hot.safetensors"
    save_safetensors(weights, hot.state_dict(), hot.config())
    path = tmp_path / "hot_fp16.onnx"
    assert cli.main(["export", "onnx", "--model", str(weights), "--precision", "fp16", "-o", str(path)]) == 0
    info, convs = check_fp16_convs_follow_units(path)
    assert convs == len([m for m in hot.modules() if isinstance(m, torch.nn.Conv2d)])
    assert {"upconv1", "HRconv"} <= set(info.fp32_units)
    assert not {"conv_first", "RRDB_trunk.0", "RRDB_trunk.1", "trunk_conv"} & set(info.fp32_units)
    x = photo_crops(8, 8)
    with torch.no_grad():
        reference = hot(x).numpy()
    got = run_onnx(path, x.numpy())
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, reference, rtol=2e-2, atol=2e-2 * float(np.abs(reference).max()))


@pytest.mark.heavy  # island measurement + export of the full model: 7 min on a busy 2-core CPU (-m heavy)
def test_cli_exports_df2k_fp16_with_its_automatic_fp32_islands(tmp_path, monkeypatch):
    """`realsr export onnx --precision fp16` of the real df2k weights: the measured fp32 units keep
    fp32 convs, every other conv is fp16, and the graph matches fp32 torch on a photo crop."""
    from realsr_fast.models.loading import load_model

    monkeypatch.setenv("REALSR_FAST_HOME", str(tmp_path / "cache"))
    path = tmp_path / "df2k_fp16.onnx"
    assert cli.main(["export", "onnx", "--precision", "fp16", "-o", str(path)]) == 0
    info, convs = check_fp16_convs_follow_units(path)
    assert info.nf == 64 and info.scale == 4
    assert convs == 351  # every conv of the 23-block RRDBNet
    model = load_model("df2k")
    x = photo_crops(24, 24)[:1]
    with torch.no_grad():
        expected = model(x).clamp(0, 1).numpy()
    got = run_onnx(path, x.numpy())
    assert np.isfinite(got).all()
    assert psnr(np.clip(got, 0, 1), expected) >= 40
