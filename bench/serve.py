"""Serving: `stepwise serve` (torch and ONNX int8, with micro-batching) against a plain FastAPI endpoint.

Run: make bench-serve   (or cd bench && ../.venv/bin/python serve.py [--requests 480] [--concurrency 1,8,32])
Needs `make bench-classify` (the SST-2 run bench/out/classify_recommended_defaults) and `make bench-infer`
(bench/out/hf_sst2_model, the HF Trainer model the plain endpoint serves through a pipeline); the ONNX int8
export is made here if missing. Each server runs in its own process on 127.0.0.1 with --threads model threads (2); this
process is the client: C threads, each with its own keep-alive connection, send a fixed number of
one-text requests (SST-2 test texts) and stop. Client and server share the host's cores.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from common import OUT, ROOT, SHARED, emit, need

PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, command: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
        self.port = free_port()
        self.log = (OUT / f"serve_{self.port}.log").open("w")
        command = [c.replace("{port}", str(self.port)) for c in command]
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd,
                                     env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"bench: server exited: {command}")
            try:
                status, _ = request(self.port, "GET", "/readyz")
                if status == 200:
                    return
            except OSError:
                time.sleep(0.3)
        sys.exit(f"bench: server not ready: {command}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.log.close()


def request(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, json.dumps(body) if body else None, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def load(port: int, texts: list[str], concurrency: int) -> dict:
    """Send every text as its own request from `concurrency` keep-alive connections; latency per request."""
    latencies: list[float] = []
    statuses: list[int] = []
    labels: list[tuple[int, str]] = []
    lock = threading.Lock()
    chunks = [list(range(i, len(texts), concurrency)) for i in range(concurrency)]

    def client(indexes: list[int]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for i in indexes:
            tick = time.perf_counter()
            try:
                conn.request("POST", "/v1/predict", json.dumps({"texts": [texts[i]]}),
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                body = response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
                status, body = 599, b""
            elapsed = time.perf_counter() - tick
            with lock:
                latencies.append(elapsed)
                statuses.append(status)
                if status == 200:
                    labels.append((i, json.loads(body)["predictions"][0]["label"]))
        conn.close()

    threads = [threading.Thread(target=client, args=(chunk,)) for chunk in chunks]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    ms = 1000 * np.array(latencies)
    return {"req_per_s": round(len(texts) / wall, 1), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "errors": sum(s != 200 for s in statuses),
            "labels": dict(labels)}


def batch_counts(port: int) -> tuple[float, float]:
    text = request(port, "GET", "/metrics")[1].decode()

    def value(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name} (\S+)$", text, re.M))

    return value("stepwise_batch_items_sum"), value("stepwise_batch_items_count")


def measure_once(name: str, server: Server, texts: list[str], gold: list[str], label_of, stepwise: bool,
                 concurrency: int) -> dict:
    before = batch_counts(server.port) if stepwise else None
    result = load(server.port, texts, concurrency)
    row = {"system": name, "concurrency": concurrency, **{k: v for k, v in result.items() if k != "labels"}}
    if stepwise:
        items, batches = (a - b for a, b in zip(batch_counts(server.port), before))
        row["mean_batch"] = round(items / max(batches, 1), 1)
    else:
        row["mean_batch"] = 1.0
    served = result["labels"]
    row["accuracy"] = round(float(np.mean([label_of(served[i]) == gold[i] for i in served])), 4)
    print(row, flush=True)
    return row


def median_row(rounds: list[dict]) -> dict:
    """The round with the median req/s (its latencies and batch size with it), errors summed over all rounds."""
    ordered = sorted(rounds, key=lambda r: r["req_per_s"])
    row = dict(ordered[len(ordered) // 2])
    row["errors"] = sum(r["errors"] for r in rounds)
    row["req_per_s_all"] = [r["req_per_s"] for r in rounds]
    return row


def main() -> None:
    from stepwise.data.readers import read_examples

    test = read_examples(need(SHARED / "sst2" / "test.tsv"))
    texts = [ex.text for ex in test][:ARGS.requests]
    gold = [ex.label for ex in test][:ARGS.requests]
    run = need(OUT / "classify_recommended_defaults")
    hf_model = need(OUT / "hf_sst2_model")
    int8 = OUT / "serve_sst2_int8"
    if not (int8 / "model.onnx").exists():
        from stepwise.recipes.export import export

        export(run, out=int8, int8=True, data=str(SHARED / "sst2" / "dev.tsv"))
    config = json.loads((hf_model / "config.json").read_text())
    hf_ids = {name: str(i) for name, i in (config.get("label2id") or {"LABEL_0": 0, "LABEL_1": 1}).items()}

    def stepwise_command(path: Path, max_batch: int) -> list[str]:
        return [PYTHON, "-m", "stepwise", "serve", str(path), "--port", "{port}", "--threads", str(ARGS.threads),
                "--max-batch", str(max_batch), "--max-wait-ms", str(ARGS.max_wait_ms), "--sub-batch",
                str(ARGS.sub_batch), "--no-access-log"]

    systems = [
        ("plain FastAPI + HF pipeline", [PYTHON, "-m", "uvicorn", "plain_server:app", "--port", "{port}",
                                         "--no-access-log", "--log-level", "warning"],
         {"PLAIN_MODEL": str(hf_model), "OMP_NUM_THREADS": str(ARGS.threads)}, hf_ids.get, False, ROOT / "bench"),
        ("stepwise serve, torch, --max-batch 1", stepwise_command(run, 1), {}, str, True, ROOT),
        ("stepwise serve, torch", stepwise_command(run, ARGS.max_batch), {}, str, True, ROOT),
        ("stepwise serve, ONNX int8", stepwise_command(int8, ARGS.max_batch), {}, str, True, ROOT),
    ]
    if ARGS.only:
        systems = [s for s in systems if any(key in s[0] for key in ARGS.only.split(","))]
    # All servers up at once; every (concurrency, round) measures each system in turn, so a slow spell of
    # this shared host falls on all systems alike. The table keeps each system's median round.
    servers = []
    try:
        for name, command, env, label_of, is_stepwise, cwd in systems:
            servers.append((name, Server(command, env, cwd), label_of, is_stepwise))
            load(servers[-1][1].port, texts[:32], 8)  # warm-up: every thread and code path once
        rows = []
        for concurrency in ARGS.concurrency:
            rounds: dict[str, list[dict]] = {name: [] for name, *_ in servers}
            for _ in range(ARGS.rounds):
                for name, server, label_of, is_stepwise in servers:
                    rounds[name].append(measure_once(name, server, texts, gold, label_of, is_stepwise, concurrency))
            rows += [median_row(measured) for measured in rounds.values()]
    finally:
        for _, server, _, _ in servers:
            server.stop()
    rows.sort(key=lambda r: ([s[0] for s in systems].index(r["system"]), r["concurrency"]))

    def rps(system: str, c: int) -> float:
        return next((r["req_per_s"] for r in rows if r["system"] == system and r["concurrency"] == c), float("nan"))

    top, low = max(ARGS.concurrency), min(ARGS.concurrency)
    plain = "plain FastAPI + HF pipeline"
    summary = {}
    for name in ("stepwise serve, torch", "stepwise serve, ONNX int8"):
        summary[name] = {f"c{top}_over_c{low}": round(rps(name, top) / rps(name, low), 2),
                         f"c{top}_over_plain_c{top}": round(rps(name, top) / rps(plain, top), 2)}
    emit("serve", rows, ["system", "concurrency", "req_per_s", "p50_ms", "p99_ms", "errors", "mean_batch",
                         "accuracy"],
         {"requests": len(texts), "max_batch": ARGS.max_batch, "max_wait_ms": ARGS.max_wait_ms,
          "sub_batch": ARGS.sub_batch, "threads": ARGS.threads, "rounds": ARGS.rounds,
          "ratios": summary})
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=480, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32])
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--sub-batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="model threads of every server")
    parser.add_argument("--only", help="comma-separated substrings of system names")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per system and concurrency (median kept)")
    ARGS = parser.parse_args()
    main()
