"""tools/hard_models.py: the hard INT8 fixtures draw what they say, and plain post-training quantization breaks both.

The trained models are cached in build/hard-models (tools/hard_models.CACHE): the first run trains
them (a few minutes on one thread), later runs load them.
"""

from __future__ import annotations

from pathlib import Path

import hard_models  # tools/hard_models.py, on sys.path through conftest.py
import numpy as np
import onnx
import pytest


def test_fixture_frames_are_seeded_and_labelled() -> None:
    a, labels = hard_models.labelled_frames("hard-detector", 4, seed=3)
    b = hard_models.sample_frames("hard-detector", 6, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b[:4], strict=True))
    assert a[0].shape == (240, 320, 3) and a[0].dtype == np.uint8
    assert all(label.shape[1] == 5 and len(label) >= 1 for label in labels)
    pages, masks = hard_models.labelled_frames("text-segmenter", 8, seed=3)
    assert pages[0].shape == (256, 256, 3) and masks[0].shape == (256, 256)
    assert all(mask.any() for mask in masks), "every scored page holds text"
    tensors = hard_models.model_inputs("hard-detector", a[:1])
    assert tensors[0].shape == (1, 3, 320, 320) and tensors[0].dtype == np.float32


def test_some_detector_classes_are_rare_in_a_small_calibration_set() -> None:
    labels = hard_models.labelled_frames("hard-detector", 64, seed=1)[1]
    counts = np.bincount(np.concatenate([label[:, 0] for label in labels]).astype(int), minlength=len(hard_models.SHAPES))
    assert counts[:3].min() >= 20
    assert counts[-3:].max() <= 15, counts


@pytest.fixture(scope="session")
def hard_detector() -> Path:
    return hard_models.build_hard_detector()


@pytest.fixture(scope="session")
def text_segmenter() -> Path:
    return hard_models.build_text_segmenter()


def _plain_ptq_scores(kind: str, model: Path, tmp_path: Path) -> tuple[dict[str, float], list[np.ndarray]]:
    calibration = hard_models.model_inputs(kind, hard_models.sample_frames(kind, 48, seed=1))
    held_out = hard_models.model_inputs(kind, hard_models.sample_frames(kind, 24, seed=99))
    quantized = hard_models.plain_ptq(model, tmp_path / "plain.onnx", calibration)
    reference = hard_models.run(model, held_out)
    return hard_models.score(kind, reference, hard_models.run(quantized, held_out)), reference


@pytest.mark.slow
def test_plain_ptq_wipes_the_detectors_class_scores(hard_detector: Path, tmp_path: Path) -> None:
    graph = onnx.load(str(hard_detector)).graph
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim[1:]] == [14, 2100]
    scores, reference = _plain_ptq_scores("hard-detector", hard_detector, tmp_path)
    confident = np.concatenate(reference)[:, 4:] > hard_models.CONFIDENT
    assert confident.sum() >= 50, "the FP32 detector must be confident about something to lose"
    # One uint8 scale for box pixels (0..320) and scores (0..1): ~1.3 per step wipes the scores.
    assert scores["kept"] < 0.5, scores
    assert scores["box_cos"] > 0.99, scores  # while the boxes, which set the scale, survive


@pytest.mark.slow
def test_plain_ptq_breaks_the_text_segmenter(text_segmenter: Path, tmp_path: Path) -> None:
    scores, reference = _plain_ptq_scores("text-segmenter", text_segmenter, tmp_path)
    assert all((r > hard_models.TEXT_THRESHOLD).any() for r in reference), "FP32 must find text on every page"
    assert scores["text_cos"] < 0.95, scores


@pytest.mark.slow
def test_the_segmenters_outlier_channels_dwarf_the_rest(text_segmenter: Path) -> None:
    import onnxruntime as ort

    model = onnx.load(str(text_segmenter))
    # The tensors the pointwise convs of the widened blocks read: the depthwise stage's affine output.
    widened = [node.input[0] for node in model.graph.node
               if node.op_type == "Conv" and any(node.name == f"/blocks.{block}/pw/conv/Conv"
                                                 for block, _ in hard_models.OUTLIER_SITES)]
    assert len(widened) == len(hard_models.OUTLIER_SITES)
    for name in widened:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = np.concatenate(hard_models.model_inputs("text-segmenter", hard_models.sample_frames("text-segmenter", 8)))
    for tensor in session.run(widened, {"images": feed}):
        peaks = np.sort(np.abs(tensor).max(axis=(0, 2, 3)))
        assert peaks[-1] > 20 * np.median(peaks), peaks
