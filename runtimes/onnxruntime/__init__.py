"""ONNX Runtime: the CPU backend (:mod:`cpu`), the GPU backend through its TensorRT and CUDA providers
(:mod:`gpu`) and per-node timing from its profiler (:mod:`layers`)."""
