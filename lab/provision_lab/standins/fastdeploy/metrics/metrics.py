"""Prometheus metrics with upstream's `fastdeploy:` names (docs/online_serving/metrics.md).

Counters are exposed with prometheus_client's `_total` suffix; what upstream's output shows
exactly for counter names is not confirmed (UNCERTAIN), so checks should match the prefix.
"""

from __future__ import annotations

import threading

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                   2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)

_COUNTERS = {
    "fastdeploy:requests_number": "Total number of requests received",
    "fastdeploy:request_success": "Total number of successfully processed requests",
    "fastdeploy:prompt_tokens": "Total number of prompt tokens processed",
    "fastdeploy:generation_tokens": "Total number of generated tokens",
}
_GAUGES = {
    "fastdeploy:num_requests_running": "Number of requests currently running",
    "fastdeploy:num_requests_waiting": "Number of requests currently waiting",
    "fastdeploy:gpu_cache_usage_perc": "GPU KV-cache usage. 1 means 100 percent usage",
    "fastdeploy:max_batch_size": "Maximum batch size determined when service started",
}
_HISTOGRAMS = {
    "fastdeploy:e2e_request_latency_seconds": "End-to-end request latency (from request arrival "
    "to final response)",
    "fastdeploy:time_to_first_token_seconds": "Time to first token in seconds",
}


class Metrics:
    """Thread-safe values behind /metrics; one instance per server process."""

    def __init__(self, max_batch_size: int) -> None:
        self._lock = threading.Lock()
        self.counters = dict.fromkeys(_COUNTERS, 0.0)
        self.gauges = dict.fromkeys(_GAUGES, 0.0)
        self.gauges["fastdeploy:max_batch_size"] = float(max_batch_size)
        self.histograms = {name: [0] * len(LATENCY_BUCKETS) + [0, 0.0] for name in _HISTOGRAMS}

    def request_started(self) -> None:
        with self._lock:
            self.counters["fastdeploy:requests_number"] += 1
            self.gauges["fastdeploy:num_requests_running"] += 1

    def request_finished(self, ok: bool, prompt_tokens: int, generated: int, seconds: float,
                         first_token_seconds: float) -> None:
        with self._lock:
            self.gauges["fastdeploy:num_requests_running"] -= 1
            if ok:
                self.counters["fastdeploy:request_success"] += 1
                self.counters["fastdeploy:prompt_tokens"] += prompt_tokens
                self.counters["fastdeploy:generation_tokens"] += generated
                self._observe("fastdeploy:e2e_request_latency_seconds", seconds)
                self._observe("fastdeploy:time_to_first_token_seconds", first_token_seconds)

    def _observe(self, name: str, value: float) -> None:
        data = self.histograms[name]
        for i, bound in enumerate(LATENCY_BUCKETS):
            if value <= bound:
                data[i] += 1
        data[-2] += 1
        data[-1] += value

    def render(self) -> str:
        lines = []
        with self._lock:
            for name, value in self.counters.items():
                lines += [f"# HELP {name}_total {_COUNTERS[name]}", f"# TYPE {name}_total counter",
                          f"{name}_total {value}"]
            for name, value in self.gauges.items():
                lines += [f"# HELP {name} {_GAUGES[name]}", f"# TYPE {name} gauge",
                          f"{name} {value}"]
            for name, data in self.histograms.items():
                lines += [f"# HELP {name} {_HISTOGRAMS[name]}", f"# TYPE {name} histogram"]
                for i, bound in enumerate(LATENCY_BUCKETS):
                    lines.append(f'{name}_bucket{{le="{bound}"}} {float(data[i])}')
                lines.append(f'{name}_bucket{{le="+Inf"}} {float(data[-2])}')
                lines += [f"{name}_count {float(data[-2])}", f"{name}_sum {data[-1]}"]
        return "\n".join(lines) + "\n"
