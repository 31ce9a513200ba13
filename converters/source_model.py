"""PyTorch and Keras models in, ONNX out: the step before the ONNX flow of ``edgedl.convert``.

Accepted: an in-memory ``torch.nn.Module`` (or ``ExportedProgram``), a ``.pt2`` program, a TorchScript
archive, a ``keras.Model``, a ``.keras``/``.h5`` file, or a TensorFlow SavedModel folder. What comes
back is the ONNX model, a record for the manifest, each input's layout, and a function that runs the
source model on ONNX-shaped inputs, which the source-vs-ONNX check uses. Nothing here writes outside
a temporary folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgedl.converters.input_layout import from_model_layout, set_input_layout, to_model_layout
from edgedl.converters.keras_export import KERAS_SUFFIXES, is_saved_model
from edgedl.converters.torch_files import TORCH_SUFFIXES
from edgedl.errors import InputFileError, UsageError
from edgedl.options import ExportOptions
from edgedl.preprocess import LAYOUTS
from edgedl.types import Sample

_TRAINING_OPS = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli", "Multinomial"}


@dataclass
class ExportedSource:
    """A framework model exported to ONNX, with what the rest of ``convert`` needs to know about it."""

    proto: onnx.ModelProto
    path: Path  # the source file, or Path(NAME) for an in-memory model
    info: dict[str, Any]  # the manifest's "source" record
    framework: str  # "PyTorch", "Keras" or "TensorFlow", for messages
    run: Callable[[Sample], list[np.ndarray]]  # the source model on ONNX-layout inputs
    example: Sample  # an ONNX-layout input of the exported shapes
    layouts: dict[str, str] = field(default_factory=dict)

    def image_size(self, name: str) -> tuple[int, int] | None:
        """(height, width) of a 4-D input in the export example: the frame size when the graph's is dynamic."""
        layout, shape = self.layouts.get(name), self.example[name].shape if name in self.example else ()
        if layout is None or len(shape) != 4:
            return None
        return (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])


def is_framework_model(model: Any) -> bool:
    """Whether ``model`` is for this module rather than an ONNX path (no framework is imported to tell)."""
    if isinstance(model, (str, Path)):
        path = Path(model)
        return path.suffix.lower() in TORCH_SUFFIXES + KERAS_SUFFIXES or is_saved_model(path)
    return not isinstance(model, (bytes, bytearray))


def export_source(model: Any, options: ExportOptions) -> ExportedSource:
    """Export ``model`` to ONNX (opset 17) and describe it; see the module docstring for what it accepts.

    ``options.example_inputs`` (a tensor or array, or a tuple of them) fixes the input shapes of an
    ``nn.Module``; files without example inputs take ``options.input_shapes``. ``options.layout`` (``NCHW``
    or ``NHWC``) puts a Transpose at each 4-D input so the bundle takes that layout.
    """
    layout = options.layout
    if layout is not None and layout.upper() not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}", fix="use nchw or nhwc")
    if isinstance(model, (str, Path)):
        path = Path(model)
        if is_saved_model(path):
            exported = _from_saved_model(path, options)
        elif path.suffix.lower() in KERAS_SUFFIXES:
            from edgedl.converters.keras_export import load_keras_file

            exported = _from_keras(load_keras_file(path), path, options)
        else:
            exported = _from_torch_file(path, options)
    elif _is_keras_model(model):
        exported = _from_keras(model, Path(str(getattr(model, "name", None) or type(model).__name__)), options)
    elif _is_torch_model(model):
        exported = _from_torch(model, None, Path(type(model).__name__), options, "pytorch-module", None)
    else:
        raise UsageError(f"cannot convert a {type(model).__name__}",
                         fix="pass an ONNX/.pt2/.ts/.keras/.h5 path, a torch.nn.Module or a keras.Model")
    _refuse_training_ops(exported.proto, exported.path)
    if layout is not None:
        _apply_layout(exported, layout.upper())
    exported.info["layout"] = dict(exported.layouts)
    return exported


def _is_keras_model(model: Any) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, getattr(keras, "Model", ()))


def _is_torch_model(model: Any) -> bool:
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    return isinstance(model, (torch.nn.Module, torch.export.ExportedProgram))


# --------------------------------------------------------------------------- PyTorch


def _from_torch_file(path: Path, options: ExportOptions) -> ExportedSource:
    from edgedl.converters.torch_files import load_torch_file

    loaded = load_torch_file(path)
    return _from_torch(loaded.program, path, path, options, loaded.kind, loaded)


def _from_torch(program: Any, file: Path | None, name: Path, options: ExportOptions, kind: str,
                loaded: Any) -> ExportedSource:
    from edgedl.converters.torch_export import export_program
    from edgedl.converters.torch_files import import_torch

    torch = import_torch()
    names = list(options.input_names or (loaded.input_names if loaded else _forward_names(program)))
    args = _example_args(torch, program, options, names, loaded, file)
    if len(names) != len(args):
        names = [f"input_{i}" for i in range(len(args))] if not options.input_names else names
        if len(names) != len(args):
            raise UsageError(f"{len(names)} input names for {len(args)} inputs", path=file,
                             fix="give one name per input")
    call = program.module() if isinstance(program, torch.export.ExportedProgram) else program
    layouts = {n: "NCHW" for n, a in zip(names, args, strict=True) if a.dim() == 4}
    result, used = _export_torch(torch, program, call, args, names, layouts, options, file, export_program)
    return _finish(result, used, file, name, "PyTorch", kind, f"torch {torch.__version__}", call, names, layouts)


def _export_torch(torch: Any, program: Any, call: Any, args: tuple[Any, ...], names: list[str],
                  layouts: dict[str, str], options: ExportOptions, file: Path | None,
                  export_program: Any) -> tuple[Any, tuple[Any, ...]]:
    """Export with the model in eval mode (restored afterwards); returns the export and the inputs it used."""
    from edgedl.loading.onnx_load import first_line

    axes = _dynamic_axes(names, [a.dim() for a in args], layouts, options)
    doubled = options.dynamic_batch and not isinstance(program, torch.export.ExportedProgram)
    if doubled:
        # torch.export treats a dim of size 1 as fixed; a batch of two lets it see the batch as dynamic
        args = tuple(a.expand(2, *a.shape[1:]).contiguous() if a.shape[0] == 1 else a for a in args)
    with _eval_mode(call), torch.no_grad():
        try:
            result = call(*args)
        except Exception as exc:  # the user's forward() raising on the example
            if doubled:
                raise InputFileError(f"the model fails on a batch of 2 ({first_line(exc)}), so its batch cannot be "
                                     "dynamic", path=file, fix="drop --dynamic-batch, or compute sizes from the "
                                                                "input's shape (x.reshape(x.shape[0], -1))") from None
            raise InputFileError(f"the model fails on the example inputs ({first_line(exc)})", path=file,
                                 fix="check example_inputs / --input-shape against what forward() expects") from None
        output_names = _output_names(options.output_names, result)
        exported = export_program(program, args, input_names=names, output_names=output_names,
                                  dynamic_axes=axes, exporter=options.exporter, source=file)
    return exported, args


@contextlib.contextmanager
def _eval_mode(module: Any) -> Iterator[None]:
    """Inference mode (dropout off, batch norm on running statistics), the caller's mode restored after."""
    training = bool(getattr(module, "training", False))
    try:
        module.eval()
    except (AttributeError, NotImplementedError):  # a torch.export program's module keeps its captured mode
        training = False
    try:
        yield
    finally:
        if training:
            module.train(True)


def _forward_names(program: Any) -> list[str]:
    forward = getattr(program, "forward", None)
    try:
        params = inspect.signature(forward).parameters.values() if forward is not None else []
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _example_args(torch: Any, program: Any, options: ExportOptions, names: list[str], loaded: Any,
                  file: Path | None) -> tuple[Any, ...]:
    if options.example_inputs is not None:
        given = options.example_inputs
        items = list(given) if isinstance(given, (tuple, list)) else [given]
        if any(not isinstance(x, (torch.Tensor, np.ndarray)) for x in items):
            raise UsageError("example_inputs must be tensors or numpy arrays (or a tuple of them)",
                             fix="pass example_inputs=torch.randn(1, 3, 224, 224)")
        return tuple(torch.as_tensor(x) for x in items)
    shapes = options.input_shapes or {}
    if shapes:
        missing = [n for n in names if n not in shapes]
        if missing:
            raise UsageError(f"no --input-shape for input(s) {', '.join(missing)}", path=file,
                             fix=f"inputs are {', '.join(names)}; give NAME=1x3x224x224 for each")
        return tuple(torch.rand(*shapes[n]) for n in names)
    if loaded is not None and loaded.example_inputs is not None:
        return tuple(loaded.example_inputs)
    where = "the file holds no example inputs" if file else "an nn.Module has no fixed input shape"
    first = names[0] if names else "input"
    raise UsageError(f"input shapes are unknown ({where})", path=file,
                     fix=f"pass --input-shape {first}=1x3x224x224 (Python: example_inputs=torch.randn(1, 3, 224, 224))")


def _dynamic_axes(names: list[str], ranks: list[int], layouts: dict[str, str],
                  options: ExportOptions) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    for name, rank in zip(names, ranks, strict=True):
        wanted: dict[int, str] = {}
        if options.dynamic_batch and rank >= 1:
            wanted[0] = "batch"
        if options.dynamic_hw and name in layouts:
            h, w = (2, 3) if layouts[name] == "NCHW" else (1, 2)
            wanted.update({h: "height", w: "width"})
        if wanted:
            axes[name] = wanted
    return axes


def _output_names(given: Sequence[str] | None, result: Any) -> list[str]:
    """The names asked for, else a dict output's keys, else ``output`` / ``output0``, ``output1``, ..."""
    count = len(_flatten(result))
    if given:
        if len(given) != count:
            raise UsageError(f"{len(given)} output names for {count} outputs", fix="give one name per output")
        return list(given)
    if isinstance(result, dict) and len(result) == count:
        return [str(k) for k in result]
    return ["output"] if count == 1 else [f"output{i}" for i in range(count)]


def _flatten(value: Any) -> list[Any]:
    """Tensors of a (nested) output in the order the exporters flatten them."""
    if isinstance(value, dict):
        return [t for v in value.values() for t in _flatten(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flatten(v)]
    return [value]


def _torch_runner(call: Any, names: list[str], layouts: dict[str, str], exported_layouts: dict[str, str]) -> Any:
    import torch

    def run(feed: Sample) -> list[np.ndarray]:
        arrays = [to_model_layout(feed[n], layouts.get(n, ""), exported_layouts.get(n, "")) for n in names]
        with _eval_mode(call), torch.no_grad():
            result = call(*[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays])
        return [t.detach().cpu().numpy() for t in _flatten(result)]

    return run


def _finish(result: Any, args: tuple[Any, ...], file: Path | None, name: Path, framework: str, kind: str,
            versions: str, call: Any, names: list[str], layouts: dict[str, str]) -> ExportedSource:
    from edgedl.fsutil import sha256_file

    info: dict[str, Any] = {"file": file.name if file else None, "format": kind, "framework": versions,
                            "exporter": result.exporter, "export_opset": result.opset}
    if file is not None and file.is_file():
        info["sha256"] = sha256_file(file)
    else:
        info["sha256"] = hashlib.sha256(result.proto.SerializeToString()).hexdigest()
        info["sha256_of"] = "the exported ONNX model (no source file)"
    if result.notes:
        info["notes"] = list(result.notes)
    example = {n: a.detach().cpu().numpy() for n, a in zip(names, args, strict=True)}
    exported_layouts = dict(layouts)  # changes if --layout transposes an input; the runner follows it
    run = _torch_runner(call, names, layouts, exported_layouts)
    return ExportedSource(result.proto, file or name, info, framework, run, example, exported_layouts)


# --------------------------------------------------------------------------- Keras and TensorFlow


def _from_keras(model: Any, path: Path, options: ExportOptions) -> ExportedSource:
    from edgedl.converters.keras_export import as_torch_module, import_keras
    from edgedl.converters.torch_export import export_program
    from edgedl.converters.torch_files import import_torch

    keras = import_keras()
    torch = import_torch()
    wrapped = as_torch_module(model)
    names = list(options.input_names or wrapped.input_names)
    if len(names) != len(wrapped.input_names):
        raise UsageError(f"{len(names)} input names for {len(wrapped.input_names)} inputs", fix="give one per input")
    file = path if path.exists() else None
    if options.example_inputs is not None:
        args = _example_args(torch, wrapped.module, options, names, None, file)
    else:
        args = tuple(_keras_example(torch, n, shape, dtype, options.input_shapes, file)
                     for n, shape, dtype in zip(names, wrapped.input_shapes, wrapped.input_dtypes, strict=True))
    layouts = {n: wrapped.layout for n, a in zip(names, args, strict=True) if a.dim() == 4}
    if not options.output_names and wrapped.output_names:
        options = replace(options, output_names=wrapped.output_names)
    result, used = _export_torch(torch, wrapped.module, wrapped.module, args, names, layouts, options, file,
                                 export_program)
    kind = "keras-h5" if path.suffix.lower() in (".h5", ".hdf5") else ("keras" if file else "keras-model")
    return _finish(result, used, file, path, "Keras", kind, f"keras {keras.__version__} (torch {torch.__version__})",
                   wrapped.module, names, layouts)


def _keras_example(torch: Any, name: str, shape: tuple[int | None, ...], dtype: str,
                   input_shapes: dict[str, list[int]] | None, file: Path | None) -> Any:
    given = (input_shapes or {}).get(name)
    if given is not None:
        if len(given) != len(shape) or any(s is not None and s != g for s, g in zip(shape[1:], given[1:], strict=True)):
            raise UsageError(f"--input-shape {name}={'x'.join(map(str, given))} does not fit the model's "
                             f"{list(shape)}", path=file, fix="give the shape in the Keras model's own layout (NHWC)")
        dims = list(given)
    else:
        if any(d is None for d in shape[1:]):
            example = "x".join(["1"] + [str(d or 224) for d in shape[1:]])
            raise UsageError(f"Keras input {name!r} has unknown dims {list(shape)}", path=file,
                             fix=f"fix them with --input-shape {name}={example}")
        dims = [1, *shape[1:]]
    torch_dtype = getattr(torch, dtype, torch.float32) if isinstance(dtype, str) else torch.float32
    return torch.rand(*dims).to(torch_dtype) if torch_dtype.is_floating_point else torch.zeros(*dims, dtype=torch_dtype)


def _from_saved_model(path: Path, options: ExportOptions) -> ExportedSource:
    from edgedl.converters.keras_export import export_saved_model
    from edgedl.converters.torch_export import OPSET
    from edgedl.fsutil import sha256_file

    if options.dynamic_batch or options.dynamic_hw or options.example_inputs is not None:
        raise UsageError("a SavedModel keeps the shapes of its serving signature", path=path,
                         fix="drop the dynamic and example options; fix shapes with --input-shape after conversion")
    saved = export_saved_model(path, OPSET)
    example = {}
    for value in saved.proto.graph.input:
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in value.type.tensor_type.shape.dim]
        np_type = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        example[value.name] = np.zeros(dims, dtype=np_type)
    layouts = {n: "NHWC" for n, a in example.items() if a.ndim == 4}
    info = {"file": path.name, "format": "tf-savedmodel", "sha256": sha256_file(path / "saved_model.pb"),
            "sha256_of": "saved_model.pb", "framework": ", ".join(f"{k} {v}" for k, v in saved.versions.items()),
            "exporter": "tf2onnx", "export_opset": OPSET}
    exported_layouts = dict(layouts)

    def run(feed: Sample) -> list[np.ndarray]:
        return saved.run({n: to_model_layout(a, layouts.get(n, ""), exported_layouts.get(n, "")) for n, a in feed.items()})

    return ExportedSource(saved.proto, path, info, "TensorFlow", run, example, exported_layouts)


# --------------------------------------------------------------------------- shared checks


def _refuse_training_ops(proto: onnx.ModelProto, path: Path) -> None:
    """Random ops and batch norm on batch statistics mean the graph was captured in training mode."""
    constants = {t.name for t in proto.graph.initializer}
    for node in proto.graph.node:
        training = node.op_type in _TRAINING_OPS
        training |= node.op_type == "BatchNormalization" and any(a.name == "training_mode" and a.i for a in node.attribute)
        training |= node.op_type == "Dropout" and len(node.input) > 2 and node.input[2] != "" and \
            not _is_false(proto, node.input[2], constants)
        if training:
            raise InputFileError(f"the exported graph has the training-only op {node.op_type} ({node.name or 'unnamed'})",
                                 path=path, fix="put the model in eval mode (model.eval()) before exporting or saving it")


def _is_false(proto: onnx.ModelProto, name: str, constants: set[str]) -> bool:
    from onnx import numpy_helper

    if name in constants:
        tensor = next(t for t in proto.graph.initializer if t.name == name)
        return not bool(numpy_helper.to_array(tensor).any())
    producer = next((n for n in proto.graph.node if name in n.output and n.op_type == "Constant"), None)
    if producer is None:
        return False
    value = next((a.t for a in producer.attribute if a.name == "value"), None)
    return value is not None and not bool(numpy_helper.to_array(value).any())


def _apply_layout(exported: ExportedSource, wanted: str) -> None:
    if not exported.layouts:
        raise UsageError("--layout applies to 4-D image inputs; this model has none", path=exported.path,
                         fix="drop --layout")
    for name, layout in list(exported.layouts.items()):
        set_input_layout(exported.proto, name, layout, wanted)
        exported.example[name] = from_model_layout(exported.example[name], layout, wanted)
        exported.layouts[name] = wanted
