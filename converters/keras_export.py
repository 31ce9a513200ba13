"""Keras models in: ``.keras`` and legacy ``.h5`` files, in-memory ``keras.Model``s, TensorFlow SavedModels.

Keras 3 runs on the torch backend here, where a model *is* a ``torch.nn.Module``: it exports through
the same PyTorch exporter as everything else, with no TensorFlow. Files load with
``safe_mode=True`` only. Before Keras reads a file, its config is searched for Lambda layers and
serialized Python lambdas (code that only unsafe loading would run) so the refusal names the layer,
and its HDF5 data is read once in a child process, where a damaged file that crashes or hangs the
HDF5 library takes down only the child.

A TensorFlow SavedModel folder needs TensorFlow and tf2onnx, which edgedl does not install: without
them the error says so; with them every op in ``saved_model.pb`` is checked for file access and Python
callbacks before TensorFlow loads it, and the serving signature is converted by tf2onnx.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgedl.errors import InputFileError, MissingDependencyError, UnsafeFileError, UsageError
from edgedl.loading.model_file import check_model_file, is_zip, read_member
from edgedl.loading.onnx_load import first_line

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
CONFIG_LIMIT = 64 << 20  # config.json describes layers, not weights: megabytes at most
HDF5_READ_TIMEOUT_S = 60  # reading every weight of a large model takes seconds
_UNSAFE_CLASSES = {"Lambda": "a Lambda layer", "TFOpLambda": "a TensorFlow-op Lambda layer",
                   "SlicingOpLambda": "a TensorFlow slicing Lambda layer", "__lambda__": "a serialized Python lambda"}
_LAMBDA_FIX = ("replace it with built-in layers (Rescaling, Activation, Reshape, ...) or a custom layer class registered "
               "with @keras.saving.register_keras_serializable, and save the model again")
#: TensorFlow ops that touch files or call back into Python: a SavedModel using them is refused.
_TF_UNSAFE_OPS = {"ReadFile", "WriteFile", "MatchingFiles", "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2",
                  "RestoreSlice", "PyFunc", "PyFuncStateless", "EagerPyFunc", "ImmutableConst", "PrintV2",
                  "ShardedFilename", "MergeV2Checkpoints", "DeleteFile", "RecursivelyCreateDir", "WriteScalarSummary",
                  "InitializeTableFromTextFile", "InitializeTableFromTextFileV2", "TextLineDataset",
                  "FixedLengthRecordDataset", "TFRecordDataset"}
#: Of those, what the SavedModel's own saver uses to save and to restore its variables: allowed there only.
_TF_SAVE_OPS = {"Save", "SaveV2", "SaveSlices", "ShardedFilename", "MergeV2Checkpoints"}
_TF_RESTORE_OPS = {"Restore", "RestoreV2", "RestoreSlice"}


def import_keras() -> Any:
    """``keras`` on the torch backend (set through ``KERAS_BACKEND`` unless the user set it)."""
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError:
        raise MissingDependencyError("converting a Keras model needs keras 3", fix='pip install "edgedl[keras]"') from None
    version = getattr(keras, "__version__", "0")
    if not version.startswith("3."):
        raise MissingDependencyError(f"keras {version} is not Keras 3", fix='pip install "edgedl[keras]"')
    backend = keras.backend.backend()
    if backend != "torch":
        raise UsageError(f"keras is running on the {backend} backend; edgedl exports Keras models through the "
                         "torch backend", fix="set KERAS_BACKEND=torch before Python imports keras (or run the edgedl CLI)")
    return keras


@dataclass
class KerasModule:
    """A Keras model wrapped as a ``torch.nn.Module`` taking its inputs positionally."""

    module: Any
    input_names: list[str]
    output_names: list[str]
    input_shapes: list[tuple[int | None, ...]]
    input_dtypes: list[str]
    layout: str  # of 4-D inputs: "NHWC" (channels_last, Keras' default) or "NCHW"


def load_keras_file(path: Path) -> Any:
    """A ``keras.Model`` from a ``.keras`` or ``.h5`` file, loaded with ``safe_mode=True``."""
    _check_file(path)
    config = _read_config(path)
    _refuse_unsafe_layers(config, path)
    keras = import_keras()
    try:
        model = keras.saving.load_model(str(path), safe_mode=True, compile=False)
    except Exception as exc:
        raise _load_error(exc, path) from None
    if not isinstance(model, keras.Model):
        raise InputFileError(f"holds a {type(model).__name__}, not a keras.Model", path=path, fix="save a Model")
    return model


def _check_file(path: Path) -> None:
    head = check_model_file(path, "a Keras file", "pass the .keras file (a SavedModel folder has saved_model.pb in it)")
    if path.suffix.lower() == ".keras" and not is_zip(path):
        raise InputFileError("is not a .keras archive (not a zip file)", path=path,
                             fix="save the model with model.save('model.keras')")
    if path.suffix.lower() in (".h5", ".hdf5") and not head.startswith(HDF5_MAGIC):
        raise InputFileError("is not an HDF5 file", path=path, fix="save the model with model.save('model.h5')")


def _read_config(path: Path) -> Any:
    """The model's architecture JSON, read without Keras: ``config.json`` or the HDF5 ``model_config`` attribute."""
    try:
        hdf5_config = _read_hdf5(path)
        if path.suffix.lower() == ".keras":
            with zipfile.ZipFile(path) as archive:
                return json.loads(read_member(archive, "config.json", CONFIG_LIMIT))
        if hdf5_config is None:
            raise InputFileError("holds weights only (no model_config), not a model", path=path,
                                 fix="save the whole model with model.save(), not save_weights()")
        return json.loads(hdf5_config)
    except InputFileError:
        raise
    except KeyError:
        raise InputFileError("is a zip archive without config.json, not a Keras model", path=path,
                             fix="save the model with model.save('model.keras')") from None
    except Exception as exc:  # zip/JSON corruption, a config too large or nested too deep
        raise InputFileError(f"cannot be read as a Keras model ({first_line(exc)})", path=path,
                             fix="save the model again") from None


#: Run in a child process by :func:`_read_hdf5`. The first line takes the working folder off sys.path (``-c``
#: puts it first), so a stray h5py.py or json.py there cannot stand in for the real modules.
_HDF5_READER = """
import sys; sys.path[:] = [p for p in sys.path if p not in ("", ".")]
import json, zipfile
import h5py

def read_all(store):
    def visit(_, item):
        for key in item.attrs:
            item.attrs[key]
        if isinstance(item, h5py.Dataset):
            item[()]
    for key in store.attrs:
        store.attrs[key]
    store.visititems(visit)
    text = store.attrs.get("model_config")
    print(json.dumps(text.decode() if isinstance(text, bytes) else text))

path = sys.argv[1]
if path.lower().endswith(".keras"):
    with zipfile.ZipFile(path) as archive:
        if "model.weights.h5" not in archive.namelist():
            print("null")
            sys.exit()
        with archive.open("model.weights.h5") as fh, h5py.File(fh, "r") as store:
            read_all(store)
else:
    with h5py.File(path, "r") as store:
        read_all(store)
"""


def _read_hdf5(path: Path) -> str | None:
    """Read every attribute and dataset of the file's HDF5 part (the ``.h5`` itself, or a ``.keras`` file's weights)
    in a child process, and return its ``model_config`` attribute (None when it has none).

    The HDF5 library segfaults or loops forever on some damaged files; in a child that ends one process, which
    becomes a one-line error here, and Keras reads the file afterwards only once it is known to be readable.
    """
    try:
        done = subprocess.run([sys.executable, "-c", _HDF5_READER, str(path)], capture_output=True, text=True,
                              timeout=HDF5_READ_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InputFileError(f"reading its HDF5 data did not finish in {HDF5_READ_TIMEOUT_S} s (a damaged file)",
                             path=path, fix="save the model again") from None
    if done.returncode < 0:
        raise InputFileError(f"the HDF5 library crashed reading it (signal {-done.returncode}): the file is damaged",
                             path=path, fix="save the model again")
    if done.returncode > 0:
        reason = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise InputFileError(f"cannot be read as a Keras model ({reason})", path=path, fix="save the model again")
    return json.loads(done.stdout)


def _refuse_unsafe_layers(config: Any, path: Path) -> None:
    stack: list[tuple[Any, str | None]] = [(config, None)]
    while stack:
        item, layer = stack.pop()
        if isinstance(item, dict):
            inner = item.get("config")
            name = inner.get("name") if isinstance(inner, dict) and isinstance(inner.get("name"), str) else layer
            kind = _UNSAFE_CLASSES.get(str(item.get("class_name")))
            if kind is not None:
                raise UnsafeFileError(f"layer {name or '?'!r} is {kind}: its Python code would run on loading, and "
                                      "edgedl loads Keras models with safe_mode=True only", path=path, fix=_LAMBDA_FIX)
            stack.extend((child, name) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, layer) for child in item)


def _load_error(exc: BaseException, path: Path) -> InputFileError:
    text = first_line(exc)
    if "safe_mode" in str(exc) or "unsafe" in str(exc).lower():
        return UnsafeFileError(f"needs unsafe deserialization to load ({text})", path=path, fix=_LAMBDA_FIX)
    if "Could not locate" in str(exc) or "Unknown layer" in str(exc):
        return InputFileError(f"uses a custom class this Python cannot import ({text})", path=path,
                              fix="import the module that registers it and call edgedl.convert(model) in Python")
    return InputFileError(f"cannot be loaded by Keras ({text})", path=path, fix="save the model again with Keras 3")


def as_torch_module(model: Any) -> KerasModule:
    """Wrap a ``keras.Model`` (torch backend) as an inference-mode ``torch.nn.Module``."""
    import torch

    keras = import_keras()
    try:
        inputs = list(model.inputs)
    except (AttributeError, ValueError):
        inputs = []
    if not inputs:
        raise UsageError("the Keras model has no defined inputs",
                         fix="build it with keras.Input(shape=...) (or call it once on data) before converting")

    class KerasForward(torch.nn.Module):
        """Calls the model with training=False and returns its outputs as a tuple."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> Any:
            result = self.model(list(tensors) if len(tensors) > 1 else tensors[0], training=False)
            if isinstance(result, dict):
                return tuple(result.values())
            return tuple(result) if isinstance(result, (list, tuple)) else result

    names = [str(getattr(t, "name", f"input_{i}")).split(":")[0] for i, t in enumerate(inputs)]
    outputs = list(getattr(model, "output_names", None) or [])
    layout = "NHWC" if keras.config.image_data_format() == "channels_last" else "NCHW"
    return KerasModule(KerasForward().eval(), names, [str(o) for o in outputs],
                       [tuple(t.shape) for t in inputs], [str(t.dtype) for t in inputs], layout)


def is_saved_model(path: Path) -> bool:
    """Whether ``path`` is a TensorFlow SavedModel folder."""
    return path.is_dir() and (path / "saved_model.pb").is_file()


@dataclass
class SavedModelExport:
    """A SavedModel's serving signature converted by tf2onnx, and a way to run the original."""

    proto: Any
    run: Any  # dict of input arrays -> list of output arrays, in the ONNX outputs' order
    input_names: list[str]
    versions: dict[str, str]


def export_saved_model(path: Path, opset: int) -> SavedModelExport:
    """Convert a SavedModel's ``serving_default`` signature with tf2onnx (needs tensorflow and tf2onnx)."""
    try:
        import tensorflow as tf
        import tf2onnx
    except ImportError as exc:
        raise MissingDependencyError(f"a TensorFlow SavedModel needs {exc.name or 'tensorflow'} to read", path=path,
                                     fix="pip install tensorflow tf2onnx, or save the model from Keras 3 as "
                                         "model.keras and convert that (no TensorFlow needed)") from None
    _refuse_unsafe_ops(_file_ops(path), path)  # before loading: loading runs the file's restore and init functions
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise InputFileError(f"cannot be loaded as a SavedModel ({first_line(exc)})", path=path,
                             fix="export it again with model.export(path) or tf.saved_model.save") from None
    function = getattr(loaded, "signatures", {}).get("serving_default")
    if function is None:
        raise InputFileError("has no serving_default signature", path=path,
                             fix="save it with tf.saved_model.save(obj, path, signatures=obj.__call__) or model.export(path)")
    graph = function.graph.as_graph_def()  # the ops are inside the called functions, in its library
    _refuse_unsafe_ops({n.op for n in graph.node}.union(*({n.op for n in f.node_def} for f in graph.library.function)),
                       path)
    specs = function.structured_input_signature[1]
    names = sorted(specs)
    signature = [tf.TensorSpec(specs[n].shape, specs[n].dtype, name=n) for n in names]

    @tf.function(input_signature=signature)
    def serve(*args: Any) -> Any:
        return function(**dict(zip(names, args, strict=True)))

    try:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    except Exception as exc:
        raise InputFileError(f"tf2onnx cannot convert it ({first_line(exc)})", path=path,
                             fix="check tf2onnx's supported ops; a Keras 3 .keras file converts without TensorFlow") from None
    for value in [*proto.graph.input, *proto.graph.output]:  # tf2onnx names an unknown batch dim unk__N
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param.startswith("unk__"):
            dims[0].dim_param = "batch"
    order = [o.name for o in proto.graph.output]

    def run(feed: dict[str, Any]) -> list[Any]:
        result = function(**{n: tf.constant(feed[n]) for n in names})
        by_name = {k: v.numpy() for k, v in result.items()}
        return [by_name[k] for k in sorted(by_name)] if set(order) != set(by_name) else [by_name[k] for k in order]

    return SavedModelExport(proto, run, names, {"tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__})


def _refuse_unsafe_ops(ops: set[str], path: Path) -> None:
    unsafe = sorted(ops & _TF_UNSAFE_OPS)
    if unsafe:
        raise UnsafeFileError(f"the SavedModel uses {', '.join(unsafe)} (file access or Python callbacks)",
                              path=path, fix="export a SavedModel whose functions only compute")


def _file_ops(path: Path) -> set[str]:
    """Every op in ``saved_model.pb`` (graphs and function libraries) but the saver's checkpoint reads and writes."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception as exc:
        raise InputFileError(f"saved_model.pb cannot be parsed ({first_line(exc)})", path=path,
                             fix="export it again with model.export(path) or tf.saved_model.save") from None
    ops: set[str] = set()
    for meta in saved.meta_graphs:
        graph, saver = meta.graph_def, meta.saver_def
        nodes = {n.name: n for n in graph.node}
        functions = {f.signature.name: f for f in graph.library.function}
        allowed: dict[str, set[str]] = {}  # node or function name -> the checkpoint ops it may use
        for tensor, kinds in ((saver.save_tensor_name, _TF_SAVE_OPS), (saver.restore_op_name, _TF_RESTORE_OPS)):
            # The nodes that saver op is built from, then the functions those call.
            pending = [tensor.split(":")[0]] if tensor else []
            seen: set[str] = set()
            while pending:
                name = pending.pop()
                if name in nodes and name not in seen:
                    seen.add(name)
                    pending.extend(i.lstrip("^").split(":")[0] for i in nodes[name].input)
            calls = [f for name in seen for f in _called(nodes[name])]
            while calls:
                name = calls.pop()
                if name in functions and name not in seen:
                    seen.add(name)
                    calls.extend(f for n in functions[name].node_def for f in _called(n))
            for name in seen:
                allowed.setdefault(name, set()).update(kinds)
        ops.update(n.op for n in graph.node if n.op not in allowed.get(n.name, ()))
        for name, function in functions.items():
            ops.update(n.op for n in function.node_def if n.op not in allowed.get(name, ()))
    return ops


def _called(node: Any) -> list[str]:
    """The functions a node calls (``f`` of a PartitionedCall, branches of an If, ...)."""
    names = []
    for value in node.attr.values():
        if value.HasField("func"):
            names.append(value.func.name)
        names.extend(f.name for f in value.list.func)
    return names
