"""load_onnx: every way an ONNX file can be wrong becomes one readable line naming the file and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_factory import conv_net, save

from edgedl.errors import InputFileError, UnsafeFileError
from edgedl.loading import onnx_load
from edgedl.loading.onnx_load import load_onnx


def assert_one_line_error(exc_info: pytest.ExceptionInfo, path: Path) -> str:
    message = str(exc_info.value)
    assert str(path) in message
    assert "\n" not in message
    assert "fix:" in message
    return message


def test_loads_a_valid_model(tmp_path: Path) -> None:
    path = save(conv_net(), tmp_path / "net.onnx")
    model = load_onnx(path)
    assert [v.name for v in model.graph.input] == ["images"]
    assert [v.name for v in model.graph.output] == ["probs"]


def test_loads_external_data_into_memory(tmp_path: Path) -> None:
    original = conv_net()
    path = save(original, tmp_path / "net.onnx", external_data=True)
    model = load_onnx(str(path))
    loaded = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for tensor in original.graph.initializer:
        np.testing.assert_array_equal(loaded[tensor.name], onnx.numpy_helper.to_array(tensor))
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in model.graph.initializer)


def _truncated(path: Path) -> None:
    data = save(conv_net(), path).read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _no_graph(path: Path) -> None:
    path.write_bytes(onnx.ModelProto(ir_version=8, opset_import=[helper.make_opsetid("", 17)]).SerializeToString())


def _no_opset(path: Path) -> None:
    model = conv_net()
    del model.opset_import[:]
    path.write_bytes(model.SerializeToString())


def _checker_fails(path: Path) -> None:
    model = conv_net()
    model.graph.node[0].input[0] = "nowhere"  # reads a tensor nothing produces
    path.write_bytes(model.SerializeToString())


LFS_POINTER = ("version https://git-lfs.github.com/spec/v1\n"
               "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n")

BROKEN_FILES = {
    "empty": (lambda p: p.write_bytes(b""), "is empty"),
    "truncated": (_truncated, "ONNX model"),
    "random bytes": (_random_bytes, "ONNX model"),
    "no graph": (_no_graph, "no graph"),
    "no opset": (_no_opset, "no opset_import"),
    "lfs pointer": (lambda p: p.write_text(LFS_POINTER), "git lfs pull"),
    "checker fails": (_checker_fails, "fails the ONNX checker"),
}


@pytest.mark.parametrize("kind", list(BROKEN_FILES))
def test_broken_file_is_an_input_error(tmp_path: Path, kind: str) -> None:
    write, expected = BROKEN_FILES[kind]
    path = tmp_path / "model.onnx"
    write(path)
    with pytest.raises(InputFileError) as exc_info:
        load_onnx(path)
    assert not isinstance(exc_info.value, UnsafeFileError)
    assert expected in assert_one_line_error(exc_info, path)
    assert exc_info.value.exit_code == 3


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.onnx"
    with pytest.raises(InputFileError) as exc_info:
        load_onnx(path)
    assert "no such file" in assert_one_line_error(exc_info, path)


def test_folder_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(InputFileError) as exc_info:
        load_onnx(tmp_path)
    assert "folder" in assert_one_line_error(exc_info, tmp_path)


def _external_model(folder: Path, location: str) -> Path:
    """A model in ``folder`` whose weights claim to live at ``location``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = save(conv_net(), folder / "net.onnx", external_data=True)
    model = onnx.load_model(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def no_external_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if external data is read before the locations were refused."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("external data was read before its location was checked")

    monkeypatch.setattr(onnx_load, "load_external_data_for_model", refuse)


@pytest.mark.usefixtures("no_external_reads")
@pytest.mark.parametrize("location", ["../secret.data", "sub/../../secret.data", "ABSOLUTE"])
def test_external_data_outside_the_folder_is_refused(tmp_path: Path, location: str) -> None:
    secret = save(conv_net(), tmp_path / "secret.onnx", external_data=True).with_suffix(".onnx.data")
    secret.rename(tmp_path / "secret.data")
    if location == "ABSOLUTE":
        location = str(tmp_path / "secret.data")
    path = _external_model(tmp_path / "model", location)
    with pytest.raises(UnsafeFileError) as exc_info:
        load_onnx(path)
    assert "external data" in assert_one_line_error(exc_info, path)
    assert exc_info.value.exit_code == 4


@pytest.mark.usefixtures("no_external_reads")
def test_external_data_symlinked_outside_the_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    data = save(conv_net(), outside / "net.onnx", external_data=True).with_suffix(".onnx.data")
    path = _external_model(tmp_path / "model", "weights.data")
    (path.parent / "weights.data").symlink_to(data)
    with pytest.raises(UnsafeFileError) as exc_info:
        load_onnx(path)
    assert "outside the model's folder" in assert_one_line_error(exc_info, path)


@pytest.mark.usefixtures("no_external_reads")
def test_external_data_symlinked_inside_the_folder_is_refused(tmp_path: Path) -> None:
    """A link is refused even when it stays inside: onnx's own loader refuses links as well."""
    path = _external_model(tmp_path, "link.data")
    (tmp_path / "link.data").symlink_to(tmp_path / "net.onnx.data")
    with pytest.raises(UnsafeFileError) as exc_info:
        load_onnx(path)
    assert "symbolic link" in assert_one_line_error(exc_info, path)


def test_missing_external_data(tmp_path: Path) -> None:
    path = save(conv_net(), tmp_path / "net.onnx", external_data=True)
    (tmp_path / "net.onnx.data").unlink()
    with pytest.raises(InputFileError) as exc_info:
        load_onnx(path)
    assert not isinstance(exc_info.value, UnsafeFileError)
    assert "missing" in assert_one_line_error(exc_info, path)


def test_short_external_data(tmp_path: Path) -> None:
    path = save(conv_net(), tmp_path / "net.onnx", external_data=True)
    data = tmp_path / "net.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(InputFileError) as exc_info:
        load_onnx(path)
    assert_one_line_error(exc_info, path)


def test_large_model_is_checked_from_its_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over 2 GB a ModelProto cannot be serialized, so the checker must read the file instead."""
    path = save(conv_net(), tmp_path / "net.onnx", external_data=True)
    checked: list[object] = []
    real_check = onnx.checker.check_model
    monkeypatch.setattr(onnx_load, "PROTOBUF_LIMIT", 1)
    monkeypatch.setattr(onnx.checker, "check_model", lambda model, *a, **k: (checked.append(model),
                                                                             real_check(model, *a, **k)))
    load_onnx(path)
    assert checked == [str(path)]
