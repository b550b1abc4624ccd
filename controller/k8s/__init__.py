"""The Kubernetes side of qforge.

Pure builders (no I/O, no Kubernetes client) live in ``naming`` (names, labels,
selectors), ``manifests`` (the runner's batch/v1 Job) and ``events`` (core/v1 Events);
the modules that talk to the API server import them, never the other way round.
"""
