#!/usr/bin/env python3
"""Prometheus metrics from `nvidia-smi --query-gpu`, one scrape = one nvidia-smi call.

Usage: gpu_exporter.py PORT. GET /metrics answers in the text exposition format with
the metric names nvidia_gpu_exporter uses (nvidia_smi_*), labelled by GPU uuid and name.
"""

import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FIELDS = [("utilization.gpu", "nvidia_smi_utilization_gpu_ratio", 0.01),
          ("memory.used", "nvidia_smi_memory_used_bytes", 1024 * 1024),
          ("memory.total", "nvidia_smi_memory_total_bytes", 1024 * 1024),
          ("temperature.gpu", "nvidia_smi_temperature_gpu", 1.0)]


def metrics() -> str:
    query = "index,uuid,name," + ",".join(f for f, _, _ in FIELDS)
    got = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=20)
    lines = [f"nvidia_smi_up {1 if got.returncode == 0 else 0}"]
    for row in got.stdout.splitlines() if got.returncode == 0 else []:
        cols = [c.strip() for c in row.split(", ")]
        if len(cols) != 3 + len(FIELDS):
            continue
        uuid, name = (c.replace('"', "").replace("\\", "") for c in cols[1:3])
        labels = f'{{uuid="{uuid}",name="{name}"}}'
        for (_, metric, scale), value in zip(FIELDS, cols[3:]):  # noqa: B905 - host Python 3.8+
            try:
                lines.append(f"{metric}{labels} {float(value) * scale:g}")
            except ValueError:
                continue
    return "\n".join(lines) + "\n"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        if self.path != "/metrics":
            self.send_error(404)
            return
        body = metrics().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
