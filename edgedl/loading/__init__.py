"""The loading layer both halves of edgedl stand on: converters and runtimes import it, never each other.

It reads model files nobody vouches for (:mod:`model_file`, :mod:`onnx_load`), describes an ONNX
graph's inputs and outputs (:mod:`onnx_io`), makes tuned ONNX Runtime sessions (:mod:`ort_session`)
and reads and writes TensorRT calibration caches (:mod:`calib_cache`). It imports nothing from
``edgedl.converters`` or ``edgedl.runtimes``.
"""
