"""CUDA for the GPU backends: device and pinned memory, streams and events (:mod:`memory`), and the
preprocessing kernel (:mod:`kernel`: its source and arguments; :mod:`preprocess`: running it)."""
