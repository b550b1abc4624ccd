"""Histogram buckets, in seconds (Prometheus base units)."""

from __future__ import annotations

# From submission to start: seconds when the cap is free, hours for a big campaign.
QUEUE_WAIT = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
# From start to finish of one job (xtb plus what surrounds it: a pod's start, the save).
RUN_TIME = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)
# xtb's own wall time: a water molecule in a fraction of a second, a protein in hours.
XTB_WALL = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 14400)
# One scheduling pass: milliseconds over a filesystem store, longer with API calls.
PASS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# One request to the Kubernetes API server.
API = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
