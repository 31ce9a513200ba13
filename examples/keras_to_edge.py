"""Train a small Keras CNN (NHWC), save it as .keras, convert the file to INT8, compare FP32 and INT8 accuracy.

    pip install "edgedl[keras]"
    python examples/keras_to_edge.py [OUTPUT_DIR]

Keras runs on its torch backend (no TensorFlow). The frames come from the generator in
pytorch_to_edge.py beside this file. Training takes a few seconds on a laptop CPU.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402
from pytorch_to_edge import CLASSES, accuracy, shapes  # noqa: E402

import edgedl  # noqa: E402
from edgedl.preprocess import PreprocessSpec, preprocess_batch  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32, 32, 3), name="images"),
        layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False), layers.BatchNormalization(momentum=0.9), layers.ReLU(),
        layers.DepthwiseConv2D(3, padding="same", use_bias=False), layers.BatchNormalization(momentum=0.9), layers.ReLU(),
        layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False), layers.BatchNormalization(momentum=0.9), layers.ReLU(),
        layers.GlobalAveragePooling2D(), layers.Dense(len(CLASSES), name="logits"),
    ], name="shapes_keras")
    frames, labels = shapes(1000, seed=0)
    spec = PreprocessSpec(width=32, height=32, layout="NHWC")  # the raw01 preset: RGB, 0..1, frames stretched
    x = preprocess_batch(spec, frames)  # the function the runtime and calibration use, so training sees the same
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.perf_counter()
    model.fit(x, labels, batch_size=64, epochs=4, verbose=0)
    print(f"trained in {time.perf_counter() - start:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        model.save(f"{tmp}/shapes.keras")  # what a user hands over: a file, loaded back with safe_mode=True
        np.save(f"{tmp}/calib.npy", preprocess_batch(spec, shapes(64, seed=1)[0]))
        bundle = edgedl.convert(f"{tmp}/shapes.keras", out / "shapes_keras.edgedl", int8=True,
                                calib_data=f"{tmp}/calib.npy", preprocess={"preset": "raw01"}, labels=CLASSES,
                                force=True)

    test_frames, test_labels = shapes(400, seed=2)  # held out: never trained or calibrated on
    inputs = preprocess_batch(bundle.manifest.preprocess, test_frames)  # NHWC, as the manifest says
    check = bundle.manifest.validation["source"]
    print(f"input layout {bundle.manifest.inputs[0].layout}; ONNX vs Keras: max relative error {check['max_rel_error']:.1e}")
    print(f"FP32 accuracy {accuracy(bundle.file('fp32'), inputs, test_labels):.3f}, "
          f"INT8 accuracy {accuracy(bundle.file('int8'), inputs, test_labels):.3f} on {len(test_labels)} held-out frames")
    print("bundle:", bundle.path)


if __name__ == "__main__":
    main()
