"""OpenVINO on x86 CPUs: the backend (:mod:`backend`) and per-layer timing from its counters (:mod:`layers`)."""
