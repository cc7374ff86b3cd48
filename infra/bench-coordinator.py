#!/usr/bin/env python3
"""Coordinator overhead with N simulated cells (issue 5, "Measure").

Starts simulated agents (one HTTP server answering the agent API for every
cell: jobs finish after a short delay, recovery points are fresh), writes a
plan with N tier-1 cells on minute schedules, runs `lifeboat serve` on it
for a while with its default tick and poll, and reports:
  - scheduling latency (a run's cron instant to its submission), from the
    coordinator's own run history: p50, p99, max;
  - coordinator CPU (user + system, from /proc) as a share of one core;
  - coordinator memory: peak and final resident set;
  - then, with the schedules still running, the time to answer
    GET /v1/status, the status page, and GET /v1/failover/plan for a
    region of 9 cells and for the whole cloud (every cell), medians of 5.
It does the same with 1 cell first, as the baseline printed beside it.
Cells keep hot standbys (stream) at their first recovery site, so a
failover plan asks the sites for them, as it would in production.

The agents are simulated on purpose: this measures the coordinator, and 50
real agents with 50 Postgres clusters do not fit on the machine.

Usage: infra/bench-coordinator.py LIFEBOAT_BIN [CELLS] [SECONDS]
"""

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "bench-" + "%032x" % random.getrandbits(128)
JOB_SECONDS = 2.0


def now():
    return datetime.now(timezone.utc)


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Agents(BaseHTTPRequestHandler):
    jobs = {}  # (cell, key) -> job
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        if self.headers.get("authorization") != "Bearer " + TOKEN:
            self.reply(401, {"error": "unauthorized"})
            return False
        return True

    def split(self):
        parts = self.path.split("/", 2)  # "", cell, rest
        return parts[1], "/" + parts[2]

    def do_POST(self):
        if not self.authorized():
            return
        cell, rest = self.split()
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        key = self.headers.get("idempotency-key")
        with self.lock:
            job = self.jobs.get((cell, key))
            if job is None:
                job = {"id": "j-%s-%d" % (cell, len(self.jobs)), "idempotency_key": key, "spec": body, "created": time.time(),
                       "created_at": iso(now())}
                self.jobs[(cell, key)] = job
                self.jobs[(cell, job["id"])] = job
        self.reply(202, self.view(job))

    def view(self, job):
        """The agent API's job (agents/api: Job); a finished job without a result, which the coordinator accepts."""
        done = time.time() - job["created"] >= JOB_SECONDS
        out = {"id": job["id"], "idempotency_key": job["idempotency_key"], "spec": job["spec"],
               "state": "succeeded" if done else "running", "created": job["created_at"], "started": job["created_at"]}
        if done:
            out["finished"] = iso(now())
        return out

    def do_GET(self):
        if not self.authorized():
            return
        cell, rest = self.split()
        if rest.startswith("/v1/guests/") and rest.endswith("/recovery"):
            return self.reply(200, guest_recovery(rest.split("/")[3]))
        if rest.startswith("/v1/jobs/"):
            with self.lock:
                job = self.jobs.get((cell, rest[len("/v1/jobs/"):]))
            return self.reply(200, self.view(job)) if job else self.reply(404, {"error": "no such job"})
        if rest == "/v1/recovery":
            return self.reply(200, recovery(cell))
        if rest == "/v1/version":
            return self.reply(200, {"version": "bench", "cell": cell, "job_kinds": ["pg-backup", "kafka-snapshot", "copy", "verify", "retention"],
                                    "locations": ["secondary", "cross"]})
        self.reply(404, {"error": "no such endpoint"})


def recovery(cell):
    """The agent API's recovery answer (agents/api: Recovery): fresh points in every location."""
    t = now()
    pg = {"backups": 12, "last_full": {"id": "f", "finished": iso(t - timedelta(minutes=3))},
          "last_incremental": {"id": "i", "finished": iso(t - timedelta(seconds=40))}, "last_segment": "000000010000000000000042",
          "recoverable_to": iso(t - timedelta(seconds=random.uniform(0, 30))), "caught_up": True}
    kafka = {"snapshots": 30, "last_snapshot": "s", "recoverable_to": iso(t - timedelta(seconds=random.uniform(0, 60)))}
    locs = [{"location": name, "role": "primary" if name == "primary" else "copy", "postgres": pg, "kafka": kafka,
             "copied_through": iso(t - timedelta(seconds=5)), "error": None} for name in ("primary", "secondary", "cross")]
    return {"cell": cell, "computed_at": iso(t), "locations": locs}


def guest_recovery(cell):
    """A recovery site's answer about a guest: a streaming standby, 0.2 s behind."""
    t = now()
    state = {"checked_at": iso(t), "running": True, "in_recovery": True, "streaming": True, "receive_lsn": "0/3000000",
             "replay_lsn": "0/3000000", "last_replayed_transaction": iso(t), "replay_lag_seconds": 0.2}
    standby = {"cell": cell, "mode": "stream", "location": "secondary", "port": 5500, "directory": "/srv/standby/" + cell,
               "backup": "f", "bootstrapped_at": iso(t - timedelta(hours=1)), "action": "running", "state": state}
    return {"cell": cell, "computed_at": iso(t), "locations": [], "standby": standby}


SMALL_REGION = 9  # cells in region r-s: the region-outage figure
PER_SITE = 50  # guest capacity of each recovery site


def write_plan(directory, cells, agents_url):
    lines = ["""[plan]
name = "bench"
description = "simulated cells"

[defaults.schedules]
pg_full = "*/5 * * * *"
pg_incremental = "* * * * *"
kafka_snapshot = "* * * * *"
retention = "*/10 * * * *"

[[tier]]
name = "t1"
rpo = "5m"
rto = "15m"
kafka_rpo = "3m"
strategy = "cold-standby"  # no DR cells needed: the scheduler does the same work

[[region]]
name = "r-a"
cloud = "azure"

[[region]]
name = "r-s"
cloud = "azure"

[[region]]
name = "r-b"
cloud = "azure"

[[region]]
name = "r-aws"
cloud = "aws"

[[location]]
name = "primary"
url = "file:///bench/primary"
region = "r-a"
role = "primary"

[[location]]
name = "secondary"
url = "file:///bench/secondary"
region = "r-b"
role = "secondary-region"

[[location]]
name = "cross"
url = "s3://bench/cross"
region = "r-aws"
role = "cross-cloud"

[[scenario]]
name = "region-outage"
scope = "region"
description = "a region fails: its cells restored in the DR region"
parallelism = 5
rto = "45m"

[[scenario]]
name = "azure-outage"
scope = "cloud"
description = "Azure fails: every cell on AWS"
parallelism = 10
rto = "4h"
"""]
    sites = (cells + PER_SITE - 1) // PER_SITE
    for k in range(sites):
        for region, prefix in (("r-b", "dr"), ("r-aws", "aws")):
            lines.append(f"""
[[recovery_site]]
name = "{prefix}-{k}"
region = "{region}"
agent = {{ url = "{agents_url}/{prefix}-{k}", token = "env:BENCH_AGENT_TOKEN", allow_insecure_http = true }}
capacity = {PER_SITE}
kafka = {{ brokers = "{prefix}-kafka-{k}:9092" }}
""")
    for i in range(cells):
        lines.append(f"""
[[cell]]
name = "cell-{i:02d}"
tier = "t1"
region = "{'r-s' if i < SMALL_REGION else 'r-a'}"
failover = {{ standby = "stream", sites = ["dr-{i // PER_SITE}", "aws-{i // PER_SITE}"] }}
tenants = ["tenant-{i:02d}"]
agent = {{ url = "{agents_url}/cell-{i:02d}", token = "env:BENCH_AGENT_TOKEN" }}
locations = ["primary", "secondary", "cross"]
postgres = {{ conninfo = "host=db-{i:02d} user=postgres" }}
kafka = {{ brokers = "kafka-{i:02d}:9092", topics = "payments\\\\..*" }}
""")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "plan.toml"), "w") as f:
        f.write("".join(lines))


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_memory_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])
    return out


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def measure(lifeboat, cells, seconds, agents_url, work):
    plan_dir = os.path.join(work, f"plan-{cells}")
    write_plan(plan_dir, cells, agents_url)
    env = dict(os.environ, BENCH_AGENT_TOKEN=TOKEN, RUST_LOG="warn")
    port_sock = __import__("socket").socket()
    port_sock.bind(("127.0.0.1", 0))
    port = port_sock.getsockname()[1]
    port_sock.close()
    state = os.path.join(work, f"state-{cells}.db")
    viewer = os.path.join(work, "viewer-token")
    with open(os.open(viewer, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(TOKEN)
    # Every tenth minute a cell has 4 runs due (full, snapshot, two retentions): with the
    # default 2 in flight per cell, two wait for a slot until a poll sees one finish. That
    # wait is the limit working, not the coordinator's latency: 4 slots keep it out.
    proc = subprocess.Popen([lifeboat, "serve", "--plans", plan_dir, "--state", state, "--listen", f"127.0.0.1:{port}",
                             "--viewer-token-file", viewer, "--cell-concurrency", os.environ.get("BENCH_CELL_CONCURRENCY", "4")],
                            env=env, stdout=subprocess.PIPE, stderr=open(os.path.join(work, f"coordinator-{cells}.log"), "w"))
    proc.stdout.readline()
    start_cpu, start = proc_cpu_seconds(proc.pid), time.time()
    time.sleep(seconds)
    cpu = proc_cpu_seconds(proc.pid) - start_cpu
    wall = time.time() - start
    mem = proc_memory_kib(proc.pid)
    get = lambda path: urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}))
    with get("/v1/runs?limit=100000") as r:
        runs = json.load(r)["runs"]
    answers = {name: timed(get, path) for name, path in (
        ("status", "/v1/status"), ("page", "/"),
        ("failover_plan_region", "/v1/failover/plan?scenario=region-outage&failed=r-s"),
        ("failover_plan_cloud", "/v1/failover/plan?scenario=azure-outage&failed=azure"))}
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    with open(os.path.join(work, f"coordinator-{cells}.log")) as f:
        warnings = [line.strip() for line in f if " WARN " in line or " ERROR " in line]
    latencies = []
    for run in runs:
        if run["trigger"] == "schedule" and run["submitted_at"] and run["attempt"] == 1:
            s = datetime.fromisoformat(run["scheduled_for"].replace("Z", "+00:00"))
            u = datetime.fromisoformat(run["submitted_at"].replace("Z", "+00:00"))
            latencies.append((u - s).total_seconds())
    failed = sum(1 for r in runs if r["state"] == "failed")
    return {
        "cells": cells,
        "seconds": round(wall, 1),
        "runs": len(runs),
        "scheduled_runs_submitted": len(latencies),
        "failed": failed,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p99_s": percentile(latencies, 99),
        "latency_max_s": max(latencies) if latencies else float("nan"),
        "cpu_share_of_one_core": cpu / wall,
        "rss_peak_mib": mem.get("VmHWM", 0) / 1024,
        "rss_end_mib": mem.get("VmRSS", 0) / 1024,
        **{f"{name}_s": seconds for name, (seconds, _) in answers.items()},
        "failover_plan_region_cells": answers["failover_plan_region"][1].get("cells"),
        "failover_plan_cloud_cells": answers["failover_plan_cloud"][1].get("cells"),
        "coordinator_warnings": len(warnings),
        "first_warning": warnings[0][:300] if warnings else None,
    }


def timed(get, path, tries=5):
    """Median seconds of `tries` GETs of `path`, and the last answer (JSON: its cell count)."""
    times, body = [], b""
    for _ in range(tries):
        start = time.perf_counter()
        with get(path) as r:
            body = r.read()
        times.append(time.perf_counter() - start)
    try:
        doc = json.loads(body)
        return percentile(times, 50), {"cells": len(doc.get("cells", []))}
    except ValueError:
        return percentile(times, 50), {}


def main():
    lifeboat = sys.argv[1]
    cells = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 180
    ThreadingHTTPServer.request_queue_size = 2048  # hundreds of agents answer at once; the simulator must not be the bottleneck
    server = ThreadingHTTPServer(("127.0.0.1", 0), Agents)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    agents_url = f"http://127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory() as work:
        results = [measure(lifeboat, n, seconds, agents_url, work) for n in (1, cells)]
    base, big = results
    for r in results:
        print(f"{r['cells']:>3} cells, {r['seconds']} s: {r['runs']} runs ({r['failed']} failed); "
              f"scheduling latency p50 {r['latency_p50_s'] * 1000:.0f} ms, p99 {r['latency_p99_s'] * 1000:.0f} ms, "
              f"max {r['latency_max_s'] * 1000:.0f} ms; CPU {100 * r['cpu_share_of_one_core']:.2f} % of a core; "
              f"RSS peak {r['rss_peak_mib']:.1f} MiB, end {r['rss_end_mib']:.1f} MiB")
        if r["coordinator_warnings"]:
            print(f"    the coordinator logged {r['coordinator_warnings']} warnings, the first: {r['first_warning']}")
        print(f"    answers (median of 5): status {r['status_s'] * 1000:.0f} ms, page {r['page_s'] * 1000:.0f} ms, "
              f"failover plan of a region ({r['failover_plan_region_cells']} cells) {r['failover_plan_region_s'] * 1000:.0f} ms, "
              f"of the cloud ({r['failover_plan_cloud_cells']} cells) {r['failover_plan_cloud_s'] * 1000:.0f} ms")
    print(f"ratio {cells} cells / 1 cell: CPU {big['cpu_share_of_one_core'] / max(base['cpu_share_of_one_core'], 1e-9):.1f}x, "
          f"peak RSS {big['rss_peak_mib'] / max(base['rss_peak_mib'], 1e-9):.2f}x, "
          f"p99 latency {big['latency_p99_s'] / max(base['latency_p99_s'], 1e-9):.2f}x, "
          f"status {big['status_s'] / max(base['status_s'], 1e-9):.1f}x, "
          f"cloud failover plan {big['failover_plan_cloud_s'] / max(base['failover_plan_cloud_s'], 1e-9):.1f}x")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
