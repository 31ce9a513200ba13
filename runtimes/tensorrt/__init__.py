"""TensorRT: the backend (:mod:`backend`), its build recipe (:mod:`build`), the engine cache
(:mod:`engine_cache`) and the per-layer profiler (:mod:`profiler`)."""
