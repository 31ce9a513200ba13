"""Postprocessing: NMS against a brute-force reference, each decoder on hand-built outputs, the registry and choose()."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgedl import postprocess
from edgedl.errors import UsageError
from edgedl.postprocess import PostContext, choose, nms
from edgedl.preprocess import PreprocessSpec
from edgedl.results import Prediction

# A 256 x 128 frame letterboxed into a 64 x 64 input: scale 1/4, 16 rows of padding on top. Both are
# exact in binary floating point, so boxes must come back to frame pixels exactly.
GEOMETRY = PreprocessSpec(width=64, height=64, resize="letterbox").geometry(256, 128)
LABELS = ["circle", "square", "triangle"]


def context(**options: object) -> PostContext:
    return PostContext(geometry=GEOMETRY, input_size=(64, 64), labels=LABELS, **options)


def to_model(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """A frame-pixel box (x1, y1, x2, y2) as YOLO's cx, cy, w, h in model-input pixels."""
    x1, y1, x2, y2 = (box[0] / 4, box[1] / 4 + 16, box[2] / 4, box[3] / 4 + 16)
    return ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)


# ---------------------------------------------------------------------------------------------- NMS


def reference_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, classes: np.ndarray | None,
                  max_output: int) -> list[int]:
    """Textbook greedy NMS in plain Python."""
    def iou(a: np.ndarray, b: np.ndarray) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union if union > 0 else 0.0

    kept: list[int] = []
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if len(kept) == max_output:
            break
        if all(iou(boxes[i], boxes[k]) <= threshold for k in kept if classes is None or classes[k] == classes[i]):
            kept.append(i)
    return kept


@st.composite
def nms_cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(0, 300))
    corners = draw(hnp.arrays(np.int64, (n, 2), elements=st.integers(0, 40)))
    sizes = draw(hnp.arrays(np.int64, (n, 2), elements=st.integers(0, 16)))
    scores = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 9)))  # few values: many ties
    classes = draw(hnp.arrays(np.int64, n, elements=st.integers(0, draw(st.integers(0, 40)))))
    return np.concatenate([corners, corners + sizes], axis=1).astype(np.float32), scores.astype(np.float32), classes


@settings(max_examples=60, deadline=None)
@given(nms_cases(), st.sampled_from([0.0, 0.3, 0.45, 0.5, 0.7]), st.booleans(), st.integers(1, 400))
def test_nms_matches_brute_force_greedy_nms(case: tuple, threshold: float, agnostic: bool, max_output: int) -> None:
    boxes, scores, classes = case
    classes = None if agnostic else classes
    kept = nms(boxes, scores, threshold, classes, max_output=max_output)
    assert kept.tolist() == reference_nms(boxes, scores, threshold, classes, max_output)


@pytest.mark.parametrize("num_classes", [1, 80])
def test_nms_on_thousands_of_boxes_matches_brute_force(num_classes: int) -> None:
    n, cap = 1500, 1000  # many blocks, and a candidate cap that cuts
    rng = np.random.default_rng(num_classes)
    corners = rng.uniform(0, 600, (n, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 120, (n, 2))], axis=1).astype(np.float32)
    scores, classes = rng.uniform(size=n).astype(np.float32), rng.integers(0, num_classes, n)
    kept = nms(boxes, scores, 0.45, classes, max_output=n, max_candidates=cap)
    top = np.argsort(-scores, kind="stable")[:cap]
    assert kept.tolist() == top[reference_nms(boxes[top], scores[top], 0.45, classes[top], n)].tolist()


def test_nms_suppresses_an_overlapping_box_of_the_same_class_only() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    classes = np.array([0, 0, 1, 0])
    assert nms(boxes, scores, 0.5, classes).tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.5).tolist() == [0, 3]  # class-agnostic


def test_nms_keeps_ties_in_input_order_and_an_iou_equal_to_the_threshold() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 5]], dtype=np.float32)
    assert nms(boxes[:2], np.array([0.5, 0.5]), 0.5).tolist() == [0]
    assert nms(boxes[:2][::-1].copy(), np.array([0.5, 0.5]), 0.5).tolist() == [0]
    assert nms(boxes[[0, 2]], np.array([0.9, 0.8]), 0.5).tolist() == [0, 1]  # IoU 0.5 is not above 0.5


def test_nms_caps_candidates_and_kept_boxes() -> None:
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(6)], dtype=np.float32)
    scores = np.array([0.1, 0.6, 0.3, 0.6, 0.5, 0.2])
    assert nms(boxes, scores, 0.5).tolist() == [1, 3, 4, 2, 5, 0]
    assert nms(boxes, scores, 0.5, max_output=2).tolist() == [1, 3]
    assert nms(boxes, scores, 0.5, max_candidates=3).tolist() == [1, 3, 4]
    ties = np.array([0.5, 0.9, 0.5, 0.5, 0.1, 0.5])
    assert nms(boxes, ties, 0.5, max_candidates=3).tolist() == [1, 0, 2]  # the cut falls among ties: input order
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


# ---------------------------------------------------------------------------------------------- detection

# Frame-pixel boxes: two objects, a weaker duplicate of the first, a box of another class on the first.
CIRCLE = (20.0, 8.0, 100.0, 56.0)
CIRCLE_DUPLICATE = (24.0, 8.0, 100.0, 60.0)
SQUARE_ON_CIRCLE = (20.0, 12.0, 96.0, 56.0)
TRIANGLE = (160.0, 40.0, 240.0, 120.0)


def yolov8_output(rows: list[tuple[tuple[float, ...], int, float]], anchors: int = 40) -> np.ndarray:
    """``[1, 4+3, anchors]`` with the given (frame box, class, score) rows and faint noise elsewhere."""
    table = np.zeros((4 + len(LABELS), anchors), dtype=np.float32)
    table[:4] = np.array(to_model((0, 0, 40, 40)), dtype=np.float32)[:, None]
    table[4:] = 0.01
    for anchor, (box, class_id, score) in enumerate(rows):
        table[:4, anchor] = to_model(box)
        table[4 + class_id, anchor] = score
    return table[None]


SCENE = [(CIRCLE, 0, 0.9), (CIRCLE_DUPLICATE, 0, 0.8), (SQUARE_ON_CIRCLE, 1, 0.7), (TRIANGLE, 2, 0.6)]


def test_yolov8_decodes_thresholds_suppresses_and_maps_back_to_frame_pixels() -> None:
    prediction = postprocess.get("yolov8")({"output0": yolov8_output(SCENE)}, context())
    dets = prediction.detections
    np.testing.assert_array_equal(dets.boxes, [CIRCLE, SQUARE_ON_CIRCLE, TRIANGLE])
    np.testing.assert_allclose(dets.scores, [0.9, 0.7, 0.6], rtol=1e-6)
    assert [d.label for d in dets] == ["circle", "square", "triangle"]
    assert prediction.outputs == {}


def test_yolov8_reads_transposed_and_batchless_tables_alike() -> None:
    table = yolov8_output(SCENE)
    expected = postprocess.get("yolov8")({"out": table}, context()).detections
    for variant in (table[0], table.transpose(0, 2, 1), np.ascontiguousarray(table[0].T)):
        dets = postprocess.get("yolov8")({"out": variant}, context()).detections
        np.testing.assert_array_equal(dets.boxes, expected.boxes)
        np.testing.assert_array_equal(dets.class_ids, expected.class_ids)


def test_yolov8_options_class_agnostic_max_detections_keep_outputs_and_clipping() -> None:
    outputs = {"output0": yolov8_output(SCENE + [((200.0, -20.0, 300.0, 60.0), 1, 0.5)])}
    yolo = postprocess.get("yolov8")
    assert yolo(outputs, context(class_agnostic=True)).detections.class_ids.tolist() == [0, 2, 1]
    assert len(yolo(outputs, context(max_detections=2)).detections) == 2
    assert yolo(outputs, context(conf_threshold=0.65)).detections.class_ids.tolist() == [0, 1]
    kept = yolo(outputs, context(keep_outputs=True))
    assert kept.outputs is outputs
    np.testing.assert_array_equal(kept.detections.boxes[-1], [200, 0, 256, 60])  # clipped to the frame


def test_yolov8_without_geometry_stays_in_model_pixels() -> None:
    prediction = postprocess.get("yolov8")({"o": yolov8_output([(CIRCLE, 0, 0.9)])}, PostContext(input_size=(64, 64)))
    np.testing.assert_array_equal(prediction.detections.boxes, [[5, 18, 25, 30]])
    assert prediction.detections[0].label == "0"


def test_yolov5_scores_are_objectness_times_class_probability() -> None:
    table = np.zeros((30, 5 + len(LABELS)), dtype=np.float32)
    rows = [(CIRCLE, 0.9, 0, 0.5), (TRIANGLE, 0.6, 2, 0.95), (SQUARE_ON_CIRCLE, 0.2, 1, 1.0)]
    for anchor, (box, objectness, class_id, probability) in enumerate(rows):
        table[anchor, :4] = to_model(box)
        table[anchor, 4] = objectness
        table[anchor, 5 + class_id] = probability
    dets = postprocess.get("yolov5")({"output0": table[None]}, context()).detections
    np.testing.assert_array_equal(dets.boxes, [TRIANGLE, CIRCLE])  # the square: 0.2 x 1.0 is below 0.25
    np.testing.assert_allclose(dets.scores, [0.57, 0.45], rtol=1e-6)
    assert dets.class_ids.tolist() == [2, 0]


def ssd_outputs(boxes: list[tuple[float, ...]], scores: list[list[float]]) -> dict[str, np.ndarray]:
    return {"scores": np.array([scores], dtype=np.float32), "boxes": np.array([boxes], dtype=np.float32)}


def frame_to_model_xyxy(box: tuple[float, ...]) -> tuple[float, ...]:
    return (box[0] / 4, box[1] / 4 + 16, box[2] / 4, box[3] / 4 + 16)


def test_ssd_reads_pixel_and_normalised_xyxy_boxes() -> None:
    pixels = [frame_to_model_xyxy(CIRCLE), frame_to_model_xyxy(TRIANGLE)]
    scores = [[0.1, 0.8, 0.0], [0.0, 0.0, 0.7]]
    for boxes in (pixels, [tuple(v / 64 for v in box) for box in pixels]):
        dets = postprocess.get("ssd")(ssd_outputs(boxes, scores), context()).detections
        np.testing.assert_array_equal(dets.boxes, [CIRCLE, TRIANGLE])
        assert [d.label for d in dets] == ["square", "triangle"]


def test_ssd_tf_reads_normalised_yxyx_and_skips_the_background_column() -> None:
    boxes = [tuple(np.array(frame_to_model_xyxy(box))[[1, 0, 3, 2]] / 64) for box in (CIRCLE, TRIANGLE)]
    scores = [[0.05, 0.9, 0.0, 0.0], [0.99, 0.0, 0.0, 0.2]]  # column 0: background; labels are one short
    dets = postprocess.get("ssd-tf")(ssd_outputs(boxes, scores), context(conf_threshold=0.1)).detections
    np.testing.assert_array_equal(dets.boxes, [CIRCLE, TRIANGLE])
    assert dets.class_ids.tolist() == [1, 3]  # score columns
    assert [d.label for d in dets] == ["circle", "triangle"]


def test_ssd_background_class_can_be_named() -> None:
    outputs = ssd_outputs([frame_to_model_xyxy(CIRCLE)], [[0.3, 0.2, 0.9]])
    dets = postprocess.get("ssd")(outputs, context(background_class=2)).detections
    assert dets.class_ids.tolist() == [0] and dets.scores.tolist() == pytest.approx([0.3])
    with pytest.raises(UsageError, match="background_class 5 is not a column"):
        postprocess.get("ssd")(outputs, context(background_class=5))


def test_frames_with_nothing_above_the_threshold_have_no_detections() -> None:
    ssd = ssd_outputs([(0.0, 0.0, 9.0, 9.0)], [[0.1, 0.2]])
    for name, outputs in [("yolov8", {"o": np.zeros((1, 7, 40))}), ("yolov5", {"o": np.zeros((1, 40, 8))}), ("ssd", ssd)]:
        dets = postprocess.get(name)(outputs, context()).detections
        assert len(dets) == 0 and dets.boxes.shape == (0, 4)


def test_bad_detection_outputs_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="no class column besides the background"):
        postprocess.get("ssd")(ssd_outputs([(0.0, 0.0, 9.0, 9.0)], [[0.9]]), context(background_class=0))
    with pytest.raises(UsageError, match="input size is unknown"):
        postprocess.get("ssd")(ssd_outputs([(0.1, 0.1, 0.5, 0.5)], [[0.9, 0.1]]), PostContext())
    with pytest.raises(UsageError, match=r"SSD outputs .* got only \[1, 4\]"):
        postprocess.get("ssd")({"only": np.zeros((1, 1, 4))}, context())
    with pytest.raises(UsageError, match=r"one frame, got an output of shape \[2, 7, 40\].*postprocess="):
        postprocess.get("yolov8")({"o": np.zeros((2, 7, 40))}, context())
    with pytest.raises(UsageError, match=r"at least one class, got an output of shape \[1, 40, 5\]"):
        postprocess.get("yolov5")({"o": np.zeros((1, 40, 5))}, context())


# ---------------------------------------------------------------------------------------------- classify


def test_classify_applies_softmax_to_logits_and_returns_top_k_best_first() -> None:
    logits = np.array([[1.0, 3.0, 2.0]], dtype=np.float32)
    classes = postprocess.get("classify")({"logits": logits}, context(top_k=2)).classes
    expected = np.exp([3.0, 2.0]) / np.exp([1.0, 3.0, 2.0]).sum()
    assert [(c.class_id, c.label) for c in classes] == [(1, "square"), (2, "triangle")]
    assert [c.score for c in classes] == pytest.approx(expected.tolist())


def test_classify_keeps_probabilities_as_they_are() -> None:
    probs = np.array([[0.2, 0.5, 0.3]], dtype=np.float32)
    classes = postprocess.get("classify")({"p": probs}, context(top_k=10)).classes
    assert [c.score for c in classes] == pytest.approx([0.5, 0.3, 0.2])
    # Summing to one with a negative value: logits, not probabilities.
    classes = postprocess.get("classify")({"p": np.array([[-1.0, 1.5, 0.5]])}, context(top_k=1)).classes
    assert classes[0].score == pytest.approx(np.exp(1.5) / np.exp([-1.0, 1.5, 0.5]).sum())


def test_classify_accepts_unit_dims_and_refuses_a_map() -> None:
    classes = postprocess.get("classify")({"p": np.array([0.0, 9.0, 0.0, 0.0]).reshape(1, 4, 1, 1)}, context()).classes
    assert classes[0].class_id == 1 and classes[0].label == "square" and classes[-1].label == "3"
    with pytest.raises(UsageError, match=r"class scores \[1, C\].*\[1, 3, 8, 8\]"):
        postprocess.get("classify")({"p": np.zeros((1, 3, 8, 8))}, context())


# ---------------------------------------------------------------------------------------------- segment


def letterboxed_scene(rows: int, cols: int) -> np.ndarray:
    """Class ids over the model input at ``rows x cols``: padding is class 3, the frame's left half 1, right half 2."""
    ids = np.full((rows, cols), 3, dtype=np.int64)
    top, bottom = rows // 4, 3 * rows // 4  # the frame fills input rows 16..48 of 64
    ids[top:bottom, : cols // 2] = 1
    ids[top:bottom, cols // 2 :] = 2
    return ids


def expected_frame_mask() -> np.ndarray:
    mask = np.full((128, 256), 1, dtype=np.int32)
    mask[:, 128:] = 2
    return mask


@pytest.mark.parametrize("size", [64, 16])  # at the input's size and at a quarter of it (a strided network)
def test_segment_removes_letterbox_padding_and_resizes_to_the_frame(size: int) -> None:
    logits = np.eye(4, dtype=np.float32)[letterboxed_scene(size, size)].transpose(2, 0, 1)[None]  # [1, 4, H, W]
    mask = postprocess.get("segment")({"logits": logits}, context()).mask
    assert mask.dtype == np.int32 and mask.shape == (128, 256)
    np.testing.assert_array_equal(mask, expected_frame_mask())


@pytest.mark.parametrize("classes", [4, 150])  # fewer and more classes than mask rows
def test_segment_reads_channels_first_and_channels_last_logits(classes: int) -> None:
    one_hot = np.eye(classes, dtype=np.float32)[letterboxed_scene(16, 16)]  # [H, W, C]
    for logits in (one_hot.transpose(2, 0, 1)[None], one_hot[None]):
        np.testing.assert_array_equal(postprocess.get("segment")({"o": logits}, context()).mask, expected_frame_mask())


def test_segment_reads_class_ids_and_refuses_one_channel_of_scores() -> None:
    ids = letterboxed_scene(64, 64)
    for output in (ids[None], ids[None, None].astype(np.float32), ids):
        np.testing.assert_array_equal(postprocess.get("segment")({"o": output}, context()).mask, expected_frame_mask())
    assert postprocess.get("segment")({"o": ids[None]}, PostContext()).mask.shape == (64, 64)
    with pytest.raises(UsageError, match="one channel of scores"):
        postprocess.get("segment")({"o": np.full((1, 1, 8, 8), 0.7, dtype=np.float32)}, context())
    with pytest.raises(UsageError, match=r"segmentation logits .*\[1, 2, 3, 4, 5\]"):
        postprocess.get("segment")({"o": np.zeros((1, 2, 3, 4, 5))}, context())


def test_segment_reads_the_mask_under_each_frame_pixel_centre() -> None:
    geometry = PreprocessSpec(width=64, height=64, resize="letterbox").geometry(16, 8)  # upscaled 4x
    ids = np.broadcast_to(np.arange(64) % 4 == 2, (64, 64)).astype(np.int64)  # 1 only under pixel centres
    mask = postprocess.get("segment")({"o": ids[None]}, PostContext(geometry=geometry, input_size=(64, 64))).mask
    np.testing.assert_array_equal(mask, np.ones((8, 16)))


def test_raw_passes_the_outputs_through() -> None:
    outputs = {"a": np.ones(3)}
    assert postprocess.get("raw")(outputs, context()).outputs is outputs


# ---------------------------------------------------------------------------------------------- registry and choose


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names registered by a test vanish after it."""
    from edgedl.postprocess import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


@pytest.mark.usefixtures("registry")
def test_a_custom_postprocessor_is_one_registered_function() -> None:
    @postprocess.register("test-count-above")
    def count(outputs: dict, ctx: PostContext) -> Prediction:
        return Prediction(outputs={"count": np.array((outputs["s"] > ctx.conf_threshold).sum())})

    assert "test-count-above" in postprocess.names()
    assert postprocess.get("test-count-above") is count
    assert int(count({"s": np.array([0.1, 0.5, 0.9])}, context()).outputs["count"]) == 2
    assert choose("detect", [("s", (1, 3))], override="test-count-above") == "test-count-above"
    with pytest.raises(UsageError, match="already registered.*replace=True"):
        postprocess.register("test-count-above")(count)
    assert postprocess.register("test-count-above", replace=True)(print) is print


@pytest.mark.usefixtures("registry")
def test_registry_refuses_unknown_names_and_non_functions() -> None:
    builtins = "classify, raw, segment, ssd, ssd-tf, yolov5, yolov8"
    with pytest.raises(UsageError, match=rf"unknown postprocessor 'yolov9'.*use one of {builtins},"):
        postprocess.get("yolov9")
    with pytest.raises(UsageError, match="must be a function"):
        postprocess.register("test-not-a-function")(42)
    with pytest.raises(UsageError, match="non-empty string"):
        postprocess.register("")


@pytest.mark.parametrize(("task", "outputs", "expected"), [
    ("classify", [("logits", (1, 1000))], "classify"),
    ("classify", [("logits", ("batch", 10, 1, 1))], "classify"),
    ("segment", [("out", (1, 21, 512, 512))], "segment"),
    ("segment", [("ids", (1, 512, 512))], "segment"),
    ("raw", [("anything", (7,))], "raw"),
    ("detect", [("output0", (1, 84, 8400))], "yolov8"),
    ("detect", [("output0", ("batch", 8, "anchors"))], "yolov8"),
    ("detect", [("scores", (1, 1917, 91)), ("boxes", (1, 1917, 4))], "ssd"),
    ("detect", [("boxes", ("b", "n", 4)), ("scores", ("b", "n", 4))], "ssd"),
])
def test_choose_reads_the_task_and_output_shapes(task: str, outputs: list, expected: str) -> None:
    assert choose(task, outputs) == expected


def test_choose_reads_a_tall_table_as_transposed_yolov8_and_says_how_to_get_yolov5(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edgedl.postprocess"):
        assert choose("detect", [("output0", (1, 25200, 85))]) == "yolov8"
    assert 'postprocess="yolov5"' in caplog.text
    caplog.clear()
    assert choose("detect", [("output0", (1, 25200, 85))], override="yolov5") == "yolov5"
    assert caplog.text == ""


@pytest.mark.parametrize(("task", "outputs", "message"), [
    ("detect", [("output0", (1, 4, 8400))], r"outputs output0 \[1, 4, 8400\]"),
    ("detect", [("output0", (1, "a", "b"))], r"outputs output0 \[1, 'a', 'b'\]"),
    ("detect", [("a", (1, 100, 4)), ("b", (1, 200, 80))], r"a \[1, 100, 4\], b \[1, 200, 80\]"),
    ("detect", [("a", (1, 100, 4)), ("b", (1, 100, 4))], "no built-in detect"),
    ("detect", [("heatmap", (1, 80, 128, 128))], "no built-in detect"),
    ("classify", [("out", (1, 21, 64, 64))], r"out \[1, 21, 64, 64\]"),
    ("segment", [("out", (1, 21))], "no built-in segment"),
    ("pose", [("out", (1, 56, 8400))], "unknown task 'pose'"),
])
def test_choose_refuses_shapes_it_cannot_read_and_says_how_to_fix_it(task: str, outputs: list, message: str) -> None:
    with pytest.raises(UsageError, match=message) as error:
        choose(task, outputs)
    assert 'postprocess="NAME"' in str(error.value) and "\n" not in str(error.value)


def test_choose_refuses_an_unknown_override() -> None:
    with pytest.raises(UsageError, match="unknown postprocessor 'yolo'"):
        choose("detect", [("output0", (1, 84, 8400))], override="yolo")


@pytest.mark.parametrize("options", [{"conf_threshold": 1.5}, {"iou_threshold": -0.1}, {"top_k": 0},
                                     {"max_detections": 0}, {"input_size": (0, 64)}, {"background_class": -1}])
def test_bad_context_options_are_usage_errors(options: dict) -> None:
    with pytest.raises(UsageError, match="bad postprocessing option"):
        PostContext(**options)
