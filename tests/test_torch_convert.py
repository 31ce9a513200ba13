"""PyTorch in, bundle out: modules, .pt2 and TorchScript files, the source check, and every way to refuse."""

from __future__ import annotations

import json
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import edgedl
from edgedl.cli.main import main
from edgedl.errors import AccuracyGateError, InputFileError, MissingDependencyError, UnsafeFileError
from edgedl.loading.ort_session import cpu_session

torch = pytest.importorskip("torch")
nn = torch.nn


class EdgeNet(nn.Module):
    """The ops edge detectors use: conv + batch norm, depthwise conv, residual add, upsample, concat, two heads."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.depthwise = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
                                       nn.Conv2d(8, 8, 1))
        self.down = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.SiLU())
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.heat = nn.Conv2d(24, 2, 1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        a = self.stem(x)
        a = a + self.depthwise(a)
        b = self.down(a)
        return {"heatmap": self.heat(torch.cat([a, self.up(b)], 1)), "logits": self.fc(self.drop(b.mean((2, 3))))}


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.mix = nn.Linear(4 + 2, 2)

    def forward(self, image, extra):
        pooled = self.conv(image).amax((2, 3))
        return self.mix(torch.cat([pooled, extra], 1)), pooled


def trained(module: nn.Module) -> nn.Module:
    """A few steps of training so batch-norm statistics are not the defaults, then the module as a user has it."""
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01)
    for _ in range(3):
        out = module(torch.rand(4, 3, 32, 32))
        loss = sum(v.square().mean() for v in out.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return module  # left in training mode on purpose: convert must export and check it in eval mode


@pytest.fixture(scope="module")
def edge_net() -> nn.Module:
    return trained(EdgeNet())


def invoke(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stdout, result.stderr


def test_module_with_edge_ops_exports_clean_and_matches(tmp_path: Path, edge_net: nn.Module) -> None:
    bundle = edgedl.convert(edge_net, tmp_path / "edge.edgedl", example_inputs=torch.rand(1, 3, 32, 32),
                            dynamic_batch=True, preprocess={"preset": "imagenet"})
    m = bundle.manifest
    assert edge_net.training, "the user's module is left in the mode it was in"
    assert m.source["format"] == "pytorch-module" and m.source["exporter"] == "dynamo" and m.source["opset"] == 17
    assert [o.name for o in m.outputs] == ["heatmap", "logits"], "dict keys name the outputs"
    assert m.inputs[0].shape == ["batch", 3, 32, 32] and m.inputs[0].layout == "NCHW"
    check = m.validation["source"]
    assert check["passed"] and check["max_rel_error"] < 1e-5 and set(check["outputs"]) == {"heatmap", "logits"}
    graph = onnx.load(str(bundle.file("fp32"))).graph
    ops = {n.op_type for n in graph.node}
    assert not ops & {"BatchNormalization", "Dropout"}, "batch norm folded, dropout gone"
    assert {"Resize", "Concat", "Add", "Conv"} <= ops and all(n.name.startswith("/") for n in graph.node)
    assert not any(n.metadata_props for n in graph.node), "no stack traces (user paths) in the bundle"
    # Dynamic batch for real: three frames at once give what the module gives.
    x = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    heat, logits = cpu_session(bundle.file("fp32")).run(None, {"x": x})
    with torch.no_grad():
        expected = edge_net.eval()(torch.from_numpy(x))
    edge_net.train()
    np.testing.assert_allclose(heat, expected["heatmap"].numpy(), atol=1e-5)
    np.testing.assert_allclose(logits, expected["logits"].numpy(), atol=1e-5)


def test_multi_input_names_and_dynamic_height_width(tmp_path: Path) -> None:
    model = TwoInputs().eval()
    bundle = edgedl.convert(model, tmp_path / "two.edgedl", example_inputs=(torch.rand(1, 3, 24, 32), torch.rand(1, 2)),
                            input_names=["image", "extra"], output_names=["score", "features"], dynamic_hw=True)
    m = bundle.manifest
    assert [i.name for i in m.inputs] == ["image", "extra"] and [o.name for o in m.outputs] == ["score", "features"]
    assert m.inputs[0].shape == [1, 3, "height", "width"]
    assert (m.preprocess.height, m.preprocess.width) == (24, 32), "frames are sized like the export example"
    session = cpu_session(bundle.file("fp32"))
    for h, w in ((24, 32), (40, 48)):
        image, extra = torch.rand(1, 3, h, w), torch.rand(1, 2)
        score = session.run(["score"], {"image": image.numpy(), "extra": extra.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(score, model(image, extra)[0].numpy(), atol=1e-5)


def test_pt2_program_through_the_cli_with_int8(tmp_path: Path, edge_net: nn.Module) -> None:
    program = torch.export.export(edge_net.eval(), (torch.rand(1, 3, 32, 32),))
    edge_net.train()
    torch.export.save(program, tmp_path / "edge.pt2")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).random((24, 3, 32, 32), dtype=np.float32))
    code, out, err = invoke(["convert", str(tmp_path / "edge.pt2"), "--int8", "--calib-data", str(tmp_path / "calib.npy"),
                             "--calib-samples", "16", "--min-cosine", "0.9", "--min-top1", "0", "--preset", "raw01"])
    assert code == 0, err
    assert "ONNX matches the PyTorch model" in out
    data = json.loads((tmp_path / "edge.edgedl" / "edgedl.json").read_text())
    assert data["source"]["format"] == "torch.export" and data["source"]["file"] == "edge.pt2"
    assert data["validation"]["source"]["samples"] == {"random": 4, "calibration": 4}
    assert "int8" in data["variants"] and data["validation"]["source"]["passed"]


def test_torchscript_archive_needs_and_takes_input_shapes(tmp_path: Path) -> None:
    scripted = torch.jit.trace(TwoInputs().eval(), (torch.rand(1, 3, 16, 16), torch.rand(1, 2)))
    scripted.save(str(tmp_path / "two.pt"))  # TorchScript saved as .pt, as people do
    code, _, err = invoke(["convert", str(tmp_path / "two.pt")])
    assert code == 2 and "--input-shape image=" in err
    code, out, err = invoke(["convert", str(tmp_path / "two.pt"), "--input-shape", "image=1x3x16x16",
                             "--input-shape", "extra=1x2"])
    assert code == 0, err
    source = json.loads((tmp_path / "two.edgedl" / "edgedl.json").read_text())["source"]
    assert source["format"] == "torchscript" and source["exporter"] == "torchscript"


class Payload:
    """Unpickling this creates the marker file: proof that a payload ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _zip_payload(tmp_path: Path) -> Path:
    torch.save({"weight": torch.zeros(2), "extra": Payload(tmp_path / "MARKER")}, tmp_path / "model.pt")
    return tmp_path / "model.pt"


def _raw_payload(tmp_path: Path) -> Path:
    (tmp_path / "model.pth").write_bytes(pickle.dumps(Payload(tmp_path / "MARKER")))
    return tmp_path / "model.pth"


@pytest.mark.parametrize("make", [_zip_payload, _raw_payload], ids=["torch.save zip", "bare pickle"])
def test_pickle_payload_never_runs(tmp_path: Path, make) -> None:
    path = make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = invoke(["convert", str(path)])
    assert code == UnsafeFileError.exit_code and "weights_only" in err and path.name in err
    assert not (tmp_path / "MARKER").exists(), "the pickle payload ran"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def _with_model_json(source: Path, target: Path, edit) -> Path:
    """Copy a .pt2 archive with its model JSON changed by ``edit``."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as out:
        for info in archive.infolist():
            data = archive.read(info.filename)
            if info.filename.endswith("/models/model.json"):
                document = json.loads(data)
                edit(document)
                data = json.dumps(document).encode()
            out.writestr(info, data)
    return target


def _first(document: dict, key: str) -> dict:
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if key in item:
                return item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    raise KeyError(key)


@pytest.fixture(scope="module")
def dynamic_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pt2") / "dyn.pt2"
    batch = torch.export.Dim("batch", max=64)
    program = torch.export.export(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval(), (torch.rand(2, 3, 8, 8),),
                                  dynamic_shapes=({0: batch},))
    torch.export.save(program, path)
    return path


def _evil_expression(marker: Path):
    def edit(document: dict) -> None:
        _first(document, "expr_str")["expr_str"] = f"__import__('builtins').open({str(marker)!r}, 'w')"
    return edit


def _evil_target(marker: Path):
    def edit(document: dict) -> None:
        node = _first(document, "target")
        node["target"] = "torch.os.system"
    return edit


def _evil_guards(marker: Path):
    def edit(document: dict) -> None:
        document["guards_code"] = [f"open({str(marker)!r}, 'w')"]
    return edit


@pytest.mark.parametrize("evil", [_evil_expression, _evil_target, _evil_guards], ids=["sympify", "target", "guards"])
def test_pt2_with_code_in_it_is_refused_before_torch_reads_it(tmp_path: Path, dynamic_pt2: Path, evil) -> None:
    path = _with_model_json(dynamic_pt2, tmp_path / "evil.pt2", evil(tmp_path / "MARKER"))
    with pytest.raises(UnsafeFileError, match="evil.pt2"):
        edgedl.convert(path)
    assert not (tmp_path / "MARKER").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pt2"]


def test_pt2_dynamic_batch_is_named_batch(tmp_path: Path, dynamic_pt2: Path) -> None:
    bundle = edgedl.convert(dynamic_pt2, tmp_path / "dyn.edgedl")
    assert bundle.manifest.inputs[0].shape == ["batch", 3, 8, 8]


def _state_dict(tmp_path: Path) -> Path:
    torch.save(TwoInputs().state_dict(), tmp_path / "weights.pth")
    return tmp_path / "weights.pth"


def _pt2_of_garbage(tmp_path: Path) -> Path:
    (tmp_path / "m.pt2").write_bytes(np.random.default_rng(0).bytes(2048))
    return tmp_path / "m.pt2"


def _torchscript_named_pt2(tmp_path: Path) -> Path:
    torch.jit.script(nn.ReLU()).save(str(tmp_path / "m.pt2"))
    return tmp_path / "m.pt2"


def _onnx_named_ts(tmp_path: Path) -> Path:
    (tmp_path / "m.ts").write_bytes(onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])).SerializeToString())
    return tmp_path / "m.ts"


class Histogram(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.head = nn.Sequential(HistogramHead())

    def forward(self, x):
        return self.head(self.conv(x))


class HistogramHead(nn.Module):
    def forward(self, x):
        return torch.histc(x, 8)


@pytest.mark.parametrize(("make", "error", "words"), [
    (_state_dict, InputFileError, ["weights only", "load_state_dict", "edgedl.convert(module"]),
    (_pt2_of_garbage, InputFileError, ["not a torch.export program"]),
    (_torchscript_named_pt2, InputFileError, ["TorchScript archive"]),
    (_onnx_named_ts, InputFileError, ["not a TorchScript archive"]),
], ids=["state dict", "garbage .pt2", "TorchScript as .pt2", "ONNX as .ts"])
def test_files_that_are_not_what_they_say(tmp_path: Path, make, error, words) -> None:
    path = make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = invoke(["convert", str(path)])
    lines = err.strip().splitlines()
    assert code == error.exit_code and len(lines) == 1 and path.name in lines[0] and "fix:" in lines[0], err
    assert all(w in lines[0] for w in words), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_unsupported_op_names_op_and_layer(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"aten\.histc.*head\.0 \(HistogramHead\)"):
        edgedl.convert(Histogram(), tmp_path / "h.edgedl", example_inputs=torch.rand(1, 3, 8, 8))
    assert not list(tmp_path.iterdir())


def test_training_mode_program_is_refused(tmp_path: Path) -> None:
    program = torch.export.export(nn.Sequential(nn.Conv2d(3, 3, 1), nn.Dropout(0.5)).train(), (torch.rand(1, 3, 8, 8),))
    torch.export.save(program, tmp_path / "train.pt2")
    with pytest.raises(InputFileError, match="training-only op .*eval"):
        edgedl.convert(tmp_path / "train.pt2")


def test_dynamic_batch_the_model_fixes_is_explained(tmp_path: Path) -> None:
    class Flatten1(nn.Module):
        def forward(self, x):
            return x.reshape(1, 4)

    with pytest.raises(InputFileError, match="batch of 2 .* cannot be dynamic"):
        edgedl.convert(Flatten1(), tmp_path / "f.edgedl", example_inputs=torch.rand(1, 4), dynamic_batch=True)


def test_tolerance_gate_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(AccuracyGateError, match="differs from the PyTorch model"):
        edgedl.convert(TwoInputs(), tmp_path / "t.edgedl", example_inputs=(torch.rand(1, 3, 8, 8), torch.rand(1, 2)),
                       tolerance=1e-12)
    assert not list(tmp_path.iterdir())


def test_missing_torch_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match=r"edgedl\[torch\]"):
        edgedl.convert(tmp_path / "model.pt2")


def test_in_memory_module_needs_example_inputs(tmp_path: Path) -> None:
    with pytest.raises(edgedl.EdgeDLError, match="example_inputs"):
        edgedl.convert(TwoInputs(), tmp_path / "x.edgedl")


def test_traced_branch_is_caught_by_the_source_check(tmp_path: Path) -> None:
    class Gate(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x  # torch.export refuses a branch on values; TorchScript traces one side

    with pytest.raises(AccuracyGateError, match="differs from the PyTorch model.*branch-free"):
        edgedl.convert(Gate(), tmp_path / "g.edgedl", example_inputs=torch.ones(1, 4))
    assert not list(tmp_path.iterdir())
