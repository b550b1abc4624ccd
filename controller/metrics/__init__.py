"""Prometheus metrics of `qforge worker` and `qforge controller` (docs/observability.md).

- `scheduling`: what this process's scheduler did (counters, histograms of its jobs);
- `store`: the job store as it is (gauges read from its index at each scrape);
- `process`: the registry and the /metrics endpoint of one worker or controller;
- `kubernetes`: the controller's own (runner pods, API requests, leader); imported only
  by the controller.

A worker in several processes sharing one store: every process reports its own counters
(sum them) and the same store gauges (take one, e.g. `max`).
"""
