#!/usr/bin/env python3
"""Side-by-side benchmarks: goro vs Go 1.19, Boost.Fiber (M:1) and std::thread.

Builds the Go peers (bench/peers/go/<workload>/main.go) into <build-dir>/bench/, then runs
every workload and size with its flavours interleaved (goro, go, fiber, thread, goro, go, ...
`--runs` times), and prints, for every metric, the median, min and max of each flavour and the
goro/peer ratio of medians. A ratio below 1 means goro is faster (time metrics) or cheaper
(memory and thread-count metrics); for throughput metrics (HIGHER_IS_BETTER, e.g. mops) the
ratio is peer/goro, so that below 1 still means goro is better.

The C++ programs come from CMake (bench/CMakeLists.txt):
    <build-dir>/bench/bench_goro_<workload>, bench_fiber_<workload>, bench_thread_<workload>
(a variant workload such as timers_busy runs its base workload's programs with other flags;
preempt_cost runs goro's spawn_complete and pingpong with the monitor thread on and off,
GORO_SYSMON=0, back to back, and reports the ratio on/off).
A flavour whose program is missing is reported as "not built". Every program prints lines
`RESULT <metric>=<value> <unit>` on stdout; each process runs under a timeout (120 s).

A workload with a driver (echo) runs the driver, <build-dir>/bench/<driver>, once per flavour
with `-server <the flavour's program>`: the one load client bench_echo_client starts each
flavour's server and measures it (throughput, latency percentiles, the server's CPU time per
round trip). The peer workloads (redis, httplib) start real third-party servers themselves.

Workloads in NOT_IMPLEMENTED (handoff) have no goro side yet: they are listed
and reported as "not yet", never with a number. After the workloads, the Google Benchmark
micro-benchmarks (<build-dir>/bench/micro/goro_micro) run once (--no-micro skips them).

    python3 bench/compare.py                      # all workloads and sizes, 5 runs each
    python3 bench/compare.py --quick              # fewer sizes, 3 runs
    python3 bench/compare.py --only yield,fib --json results.json
    python3 bench/compare.py --report docs/benchmarks.md   # + Markdown report and chart

--report PATH writes a Markdown report (machine, toolchain, command, one table per workload,
the micro-benchmarks) and its chart of goro/peer ratios next to it as benchmarks.svg.

Standard library only, except the chart: matplotlib (Debian's python3-matplotlib, run with
/usr/bin/python3 when this interpreter lacks it), else gnuplot, else the report says "no chart".
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
GO_DIR = BENCH_DIR / "peers" / "go"

FLAVOURS = ["goro", "go", "fiber", "thread"]
WORKLOADS = ["yield", "spawn_complete", "spawn_run", "fib", "spawn_park", "pingpong",
             "chan_throughput", "select4", "timers", "timers_busy", "mutex",
             "preempt", "preempt_cost", "echo", "redis", "httplib", "handoff"]
# Workloads whose goro side does not exist yet: they keep their place in the tables and are
# printed and reported as "not yet", never with a number (nothing is built or run for them).
NOT_IMPLEMENTED = {
    "handoff": "work during a blocking syscall: needs the I/O issue (syscall handoff)",
}
NOT_YET = "not yet"
METRICS = {
    "yield": ["ns_per_switch"],
    "spawn_complete": ["ns_per_task"],
    "spawn_run": ["ns_per_task"],
    "fib": ["ms"],
    "spawn_park": ["spawn_ns_per_task", "release_ns_per_task", "rss_kib_per_task",
                   "threads_while_parked"],
    "pingpong": ["ns_per_roundtrip"],
    "chan_throughput": ["ns_per_op", "mops"],
    "select4": ["ns_per_op"],
    "timers": ["p50_lateness_us", "p99_lateness_us", "cpu_ms"],
    "timers_busy": ["p50_lateness_us", "p99_lateness_us", "cpu_ms"],
    "mutex": ["ns_per_op"],
    # The server's CPU time per round trip first: on 2 cores the one load client competes with
    # the server, so throughput and latency depend on how the CPUs are shared.
    "echo": ["server_cpu_ns_per_rt", "rt_per_s", "p50_us", "p99_us", "server_user_ns_per_rt",
             "server_sys_ns_per_rt"],
    # Unmodified hiredis (redis) and cpp-httplib (httplib, loaded by wrk): goroutines vs threads.
    "redis": ["rt_per_s", "cpu_ns_per_rt", "max_threads"],
    "httplib": ["req_per_s", "cpu_ns_per_req", "p50_us", "p99_us", "max_threads"],
    "preempt": ["p50_ms", "p99_ms", "max_ms"],
    # The programs' main metric with sysmon on and off (SYSMON_VARIANTS) and their ratio.
    "preempt_cost": ["sysmon_on_ns", "sysmon_off_ns", "on_off_ratio"],
    "handoff": ["ms"],
}
# The metric(s) of each workload that the report's chart shows (default: the first one).
CHART_METRICS = {
    "spawn_park": ["spawn_ns_per_task", "rss_kib_per_task"],
    "chan_throughput": ["ns_per_op"],
    "timers": ["p99_lateness_us"],
    "timers_busy": ["p99_lateness_us"],
    "preempt": ["p50_ms"],
    "echo": ["server_cpu_ns_per_rt", "p99_us"],
    "httplib": ["req_per_s"],
}
# preempt_cost's variants: each run runs the goro program once per variant (alternating which
# goes first), takes its main metric (the first of METRICS[program]) under the variant's name,
# and adds the ratio first/second: the monitor thread's cost (the target is < 1.02).
SYSMON_VARIANTS = (("sysmon_on_ns", {}), ("sysmon_off_ns", {"GORO_SYSMON": "0"}))
# Workloads without peers whose summary line shows one goro metric instead of ratios.
GORO_ONLY_SUMMARY = {"preempt_cost": "on_off_ratio"}
# Metrics where more is better (throughputs): their ratio column is peer/goro instead, so that
# every ratio reads the same way (< 1: goro better).
HIGHER_IS_BETTER = {"mops", "rt_per_s", "req_per_s"}
RESULT_RE = re.compile(r"^RESULT\s+([A-Za-z0-9_]+)=(\S+)\s+(\S+)\s*$")


@dataclass
class Config:
    """One workload at one size: the programs' flags and the flavours that take part."""
    workload: str
    args: dict[str, int]
    flavours: list[str]
    # Per-flavour flag overrides (the thread flavour of `yield` does fewer switches: a kernel
    # switch costs ~1 us, and the metric is per switch anyway).
    overrides: dict[str, dict[str, int]] = field(default_factory=dict)
    # The programs to run, bench_<flavour>_<program>, when not the workload's own (a variant
    # such as timers_busy runs the timers programs with other flags).
    program: str | None = None
    # Environment variants (preempt_cost): (metric name, environment) pairs; see SYSMON_VARIANTS.
    variants: tuple = ()
    # A program in <build-dir>/bench that runs each flavour's program (echo: the load client
    # bench_echo_client, given `-server <bench_<flavour>_<program>>`).
    driver: str | None = None

    @property
    def prog(self) -> str:
        return self.program or self.workload

    def flavour_args(self, flavour: str) -> dict[str, int]:
        a = dict(self.args)
        a.update(self.overrides.get(flavour, {}))
        return a

    @property
    def label(self) -> str:
        parts = [f"{k}={v:,}" for k, v in self.args.items()]
        for fl, ov in self.overrides.items():
            if fl in self.flavours:
                parts.append(f"({fl}: " + " ".join(f"{k}={v:,}" for k, v in ov.items()) + ")")
        if self.program and not self.workload.startswith(self.program):
            parts.insert(0, self.program)  # preempt_cost runs several programs
        return f"{self.workload} " + " ".join(parts)


def configs(quick: bool) -> list[Config]:
    every = ["goro", "go", "fiber", "thread"]
    no_thread = ["goro", "go", "fiber"]
    # Not implemented yet (NOT_IMPLEMENTED): reported as "not yet", nothing is run.
    planned = [
        Config("handoff", {"procs": 2}, ["goro", "go"]),
    ]
    # TCP echo (64-byte messages, one in flight per connection), the one load client
    # bench_echo_client in front of goro's examples/echo_server.cpp, Go's net server and a
    # hand-written epoll loop per CPU with no runtime (thread: the floor).
    echo = [Config("echo", {"conns": c, "seconds": 2 if quick else 3}, ["goro", "go", "thread"],
                   driver="echo_client") for c in ((1000,) if quick else (100, 1000, 10000))]
    # Real third-party peers: hiredis in 1,000 goroutines vs 1,000 threads (GOMAXPROCS=2),
    # cpp-httplib's server under wrk with 1,000 connections: a goroutine per connection vs
    # httplib's default thread pool (max(8, CPUs - 1) threads) and a pool of 1,000 threads.
    peers = [
        Config("redis", {"clients": 1000, "n": 50 if quick else 200}, ["goro", "thread"]),
        Config("httplib", {"conns": 1000, "seconds": 2 if quick else 3}, ["goro", "thread"]),
    ]
    if not quick:
        peers.append(Config("httplib", {"conns": 1000, "seconds": 3}, ["goro", "thread"],
                            {"thread": {"pool": 1000}}))
    if quick:
        return [
            Config("yield", {"n": 2_000_000}, every, {"thread": {"n": 200_000}}),
            Config("spawn_complete", {"n": 200_000, "procs": 1}, no_thread,
                   {"fiber": {"n": 50_000}}),
            Config("spawn_complete", {"n": 200_000, "procs": 2}, ["goro", "go"]),
            Config("spawn_run", {"n": 10_000}, every),
            Config("fib", {"n": 27, "procs": 1}, no_thread),
            Config("fib", {"n": 27, "procs": 2}, ["goro", "go"]),
            Config("spawn_park", {"n": 10_000}, every),
            Config("spawn_park", {"n": 100_000}, no_thread),
            Config("pingpong", {"n": 200_000, "procs": 1}, no_thread),
            Config("pingpong", {"n": 200_000, "procs": 2}, ["goro", "go"]),
            Config("chan_throughput", {"n": 2_000_000, "p": 1}, no_thread),
            Config("chan_throughput", {"n": 2_000_000, "p": 4}, no_thread),
            Config("select4", {"n": 1_000_000}, ["goro", "go"]),
            Config("timers", {"n": 20_000}, ["goro", "go"]),
            Config("timers_busy", {"n": 20_000, "busy": 2}, ["goro", "go"], program="timers"),
            Config("mutex", {"n": 2_000_000, "procs": 1}, ["goro", "go", "thread"]),
            Config("mutex", {"n": 2_000_000, "procs": 2}, ["goro", "go", "thread"]),
            Config("preempt", {"n": 20, "procs": 1}, ["goro", "go"]),
            Config("preempt_cost", {"n": 200_000, "procs": 1}, ["goro"],
                   program="spawn_complete", variants=SYSMON_VARIANTS),
            Config("preempt_cost", {"n": 200_000, "procs": 1}, ["goro"], program="pingpong",
                   variants=SYSMON_VARIANTS),
        ] + echo + peers + planned
    return [
        # The thread flavour (a kernel switch costs ~1 us, several on a loaded machine) and
        # Boost.Fiber's spawns (~10-30 us each: a stack is mapped per fiber) run fewer
        # iterations, so that the full suite stays under 15 minutes; the metrics are per item.
        Config("yield", {"n": 10_000_000}, every, {"thread": {"n": 500_000}}),
        Config("spawn_complete", {"n": 1_000_000, "procs": 1}, no_thread,
               {"fiber": {"n": 100_000}}),
        Config("spawn_complete", {"n": 1_000_000, "procs": 2}, ["goro", "go"]),
        Config("spawn_complete", {"n": 10_000}, ["goro", "go", "thread"]),
        Config("spawn_run", {"n": 10_000}, every),
        Config("spawn_run", {"n": 1_000_000}, no_thread, {"fiber": {"n": 100_000}}),
        Config("fib", {"n": 27, "procs": 1}, no_thread),     # Boost.Fiber is M:1 here
        Config("fib", {"n": 27, "procs": 2}, ["goro", "go"]),
        Config("spawn_park", {"n": 10_000}, every),          # threads only at 10,000
        Config("spawn_park", {"n": 100_000}, no_thread),
        Config("spawn_park", {"n": 1_000_000}, ["goro", "go"]),  # fiber up to 100,000
        Config("pingpong", {"n": 1_000_000, "procs": 1}, no_thread),  # fiber: M:1
        Config("pingpong", {"n": 1_000_000, "procs": 2}, ["goro", "go"]),
        # GOMAXPROCS = all CPUs for goro and Go; Boost.Fiber on one thread.
        Config("chan_throughput", {"n": 10_000_000, "p": 1}, no_thread),
        Config("chan_throughput", {"n": 10_000_000, "p": 4}, no_thread),
        Config("select4", {"n": 4_000_000}, ["goro", "go"]),             # unbuffered
        Config("select4", {"n": 4_000_000, "cap": 64}, ["goro", "go"]),  # buffered
        Config("timers", {"n": 100_000}, ["goro", "go"]),
        Config("timers_busy", {"n": 100_000, "busy": 2}, ["goro", "go"], program="timers"),
        # 10,000,000 rather than the programs' default 1,000,000: ~10-20 ms is too short to time.
        Config("mutex", {"n": 10_000_000, "procs": 1}, ["goro", "go", "thread"]),
        Config("mutex", {"n": 10_000_000, "procs": 2}, ["goro", "go", "thread"]),
        # GOMAXPROCS=1: a spinner without calls; latency until the yielding task runs again.
        Config("preempt", {"n": 50, "procs": 1}, ["goro", "go"]),
    ] + [Config("preempt_cost", {"n": 1_000_000, "procs": procs}, ["goro"], program=prog,
                variants=SYSMON_VARIANTS)
         for prog in ("spawn_complete", "pingpong") for procs in (1, 2)] + echo + peers + planned


def binary(build_dir: Path, flavour: str, workload: str) -> Path:
    return build_dir / "bench" / f"bench_{flavour}_{workload}"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GOMAXPROCS", None)  # the programs take -procs; the default is all CPUs
    env.pop("GOGC", None)
    env.pop("GODEBUG", None)
    return env


def build_go(build_dir: Path, workloads: list[str], go: str) -> dict[str, str]:
    """Builds bench_go_<workload> into <build-dir>/bench; returns {workload: error} failures."""
    errors: dict[str, str] = {}
    go_path = shutil.which(go)
    if go_path is None:
        for w in workloads:
            errors[w] = f"'{go}' not found"
        log(f"compare.py: '{go}' not found: the Go flavour is not built")
        return errors
    out_dir = build_dir / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    env = child_env()
    env.update({"GO111MODULE": "on", "GOFLAGS": "-mod=mod", "GOPROXY": "off",
                "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"})
    for w in workloads:
        out = out_dir / f"bench_go_{w}"
        cmd = [go_path, "build", "-o", str(out), f"./{w}"]
        try:
            p = subprocess.run(cmd, cwd=GO_DIR, env=env, capture_output=True, text=True,
                               timeout=300)
        except subprocess.TimeoutExpired:
            errors[w] = "go build timed out"
            continue
        if p.returncode != 0:
            errors[w] = (p.stderr or p.stdout).strip()
            log(f"compare.py: go build ./{w} failed:\n{errors[w]}")
            try:
                out.unlink()  # never run a stale binary
            except FileNotFoundError:
                pass
    return errors


@dataclass
class Run:
    rc: int | None
    seconds: float
    metrics: dict[str, tuple[float, str]]
    error: str | None


def run_once(path: Path, args: dict[str, int], timeout: float,
             env: dict[str, str] | None = None, driver: Path | None = None) -> Run:
    cmd = [str(driver if driver is not None else path)]
    for k, v in args.items():
        cmd += [f"-{k}", str(v)]
    if driver is not None:
        cmd += ["-server", str(path)]
    t0 = time.monotonic()
    try:
        # Its own session, so that a timeout ends whatever it started too.
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(child_env(), **(env or {})), stdin=subprocess.DEVNULL,
                             start_new_session=True)
    except OSError as e:
        return Run(None, time.monotonic() - t0, {}, f"cannot run: {e}")
    try:
        stdout, stderr = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.communicate()
        return Run(None, time.monotonic() - t0, {}, f"timed out after {timeout:g} s")
    seconds = time.monotonic() - t0
    metrics: dict[str, tuple[float, str]] = {}
    for line in stdout.splitlines():
        m = RESULT_RE.match(line.strip())
        if m:
            try:
                metrics[m.group(1)] = (float(m.group(2)), m.group(3))
            except ValueError:
                pass
    error = None
    if p.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        error = f"exit status {p.returncode}" + (f": {tail}" if tail else "")
        if p.returncode < 0:
            error = f"killed by signal {-p.returncode}" + (f": {tail}" if tail else "")
    elif not metrics:
        error = "no RESULT lines"
    return Run(p.returncode, seconds, metrics if error is None else {}, error)


def run_variants(path: Path, cfg: Config, flavour: str, index: int, timeout: float) -> Run:
    """One run of a config with variants: the program once per variant, the order alternating
    with `index`; metrics are the variants' main metric and the ratio first/second."""
    base = METRICS[cfg.prog][0]
    order = list(cfg.variants) if index % 2 == 0 else list(reversed(cfg.variants))
    metrics: dict[str, tuple[float, str]] = {}
    seconds, errors, rc = 0.0, [], 0
    for name, env in order:
        r = run_once(path, cfg.flavour_args(flavour), timeout, env)
        seconds += r.seconds
        if r.error is not None or base not in r.metrics:
            errors.append(f"{name}: {r.error or 'no ' + base}")
            rc = r.rc
            continue
        metrics[name] = r.metrics[base]
    names = [name for name, _ in cfg.variants]
    if not errors and len(names) == 2 and metrics[names[1]][0] > 0:
        ratio_name = METRICS[cfg.workload][2]
        metrics[ratio_name] = (metrics[names[0]][0] / metrics[names[1]][0], "x")
    if errors:
        return Run(rc, seconds, {}, "; ".join(errors))
    return Run(0, seconds, metrics, None)


def fmt_num(v: float) -> str:
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 10:
        return f"{v:.2f}"
    return f"{v:.3f}"


def summarize(runs: list[Run], metric: str) -> dict | None:
    vals = [r.metrics[metric][0] for r in runs if metric in r.metrics]
    if not vals:
        return None
    unit = next(r.metrics[metric][1] for r in runs if metric in r.metrics)
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "unit": unit, "values": vals}


def run_config(cfg: Config, build_dir: Path, runs: int, timeout: float,
               go_errors: dict[str, str]) -> dict:
    """Runs one config's flavours interleaved; returns its JSON-ready record."""
    flav: dict[str, dict] = {}
    if cfg.workload in NOT_IMPLEMENTED:
        for f in FLAVOURS:
            flav[f] = {"status": NOT_YET if f in cfg.flavours else "n/a"}
        return {"workload": cfg.workload, "program": cfg.prog, "label": cfg.label,
                "args": cfg.args, "overrides": cfg.overrides, "flavours": flav,
                "ratios": {m: {f: None for f in FLAVOURS[1:] if f in cfg.flavours}
                           for m in METRICS[cfg.workload]},
                "not_implemented": NOT_IMPLEMENTED[cfg.workload]}
    present: list[str] = []
    driver = build_dir / "bench" / f"bench_{cfg.driver}" if cfg.driver else None
    for f in FLAVOURS:
        if f not in cfg.flavours:
            flav[f] = {"status": "n/a"}
            continue
        path = binary(build_dir, f, cfg.prog)
        if driver is not None and not (driver.is_file() and os.access(driver, os.X_OK)):
            flav[f] = {"status": "not built", "binary": str(driver)}
            continue
        if not (path.is_file() and os.access(path, os.X_OK)):
            why = go_errors.get(cfg.prog) if f == "go" else None
            flav[f] = {"status": "not built", "binary": str(path)}
            if why:
                flav[f]["error"] = why
            continue
        flav[f] = {"status": "ok", "binary": str(path), "args": cfg.flavour_args(f), "runs": []}
        present.append(f)

    all_runs: dict[str, list[Run]] = {f: [] for f in present}
    for i in range(runs):
        for f in present:
            if cfg.variants:
                r = run_variants(Path(flav[f]["binary"]), cfg, f, i, timeout)
            else:
                r = run_once(Path(flav[f]["binary"]), cfg.flavour_args(f), timeout,
                             driver=driver)
            all_runs[f].append(r)
            status = "ok" if r.error is None else r.error.splitlines()[0]
            log(f"  [{cfg.label}] run {i + 1}/{runs} {f:6s} {r.seconds:7.2f} s  {status}")

    for f in present:
        rs = all_runs[f]
        flav[f]["runs"] = [{"rc": r.rc, "seconds": round(r.seconds, 3),
                            "metrics": {k: v[0] for k, v in r.metrics.items()},
                            "error": r.error} for r in rs]
        ok = [r for r in rs if r.error is None]
        if not ok:
            flav[f]["status"] = "failed"
            flav[f]["error"] = rs[-1].error if rs else "no runs"
        flav[f]["ok_runs"] = len(ok)
        flav[f]["metrics"] = {}
        for m in METRICS[cfg.workload]:
            s = summarize(ok, m)
            if s is not None:
                flav[f]["metrics"][m] = s

    ratios: dict[str, dict[str, float | None]] = {}
    goro_m = flav["goro"].get("metrics", {}) if flav["goro"]["status"] == "ok" else {}
    for m in METRICS[cfg.workload]:
        ratios[m] = {}
        for f in FLAVOURS[1:]:
            peer_m = flav[f].get("metrics", {}) if flav[f]["status"] == "ok" else {}
            g, p = goro_m.get(m), peer_m.get(m)
            if f not in cfg.flavours:
                continue
            num, den = (p, g) if m in HIGHER_IS_BETTER else (g, p)
            ratios[m][f] = (num["median"] / den["median"]
                            if num is not None and den is not None and den["median"] != 0
                            else None)
    return {"workload": cfg.workload, "program": cfg.prog, "label": cfg.label, "args": cfg.args,
            "overrides": cfg.overrides, "flavours": flav, "ratios": ratios}


def print_config(rec: dict, runs: int) -> None:
    wl = rec["workload"]
    print()
    if rec.get("not_implemented"):
        print(f"== {rec['label']}  -- {NOT_YET}: {rec['not_implemented']}")
        return
    print(f"== {rec['label']}  ({runs} runs, interleaved)")
    print(f"   {'metric':<30} {'flavour':<7} {'median':>12} {'min':>12} {'max':>12}"
          f"  {'goro/peer':>9}")
    notes: list[str] = []
    for m in METRICS[wl]:
        first = True
        for f in FLAVOURS:
            fr = rec["flavours"][f]
            if fr["status"] == "n/a":
                continue
            unit = None
            for ff in FLAVOURS:
                mm = rec["flavours"][ff].get("metrics", {}).get(m)
                if mm:
                    unit = mm["unit"]
                    break
            name = f"{m} (ratio peer/goro)" if m in HIGHER_IS_BETTER else m
            head = f"{name} [{unit}]" if first and unit else (name if first else "")
            first = False
            if fr["status"] != "ok":
                text = fr["status"]
                if fr["status"] == "failed" and fr.get("error"):
                    notes.append(f"{f}: {fr['error']}")
                print(f"   {head:<30} {f:<7} {text:>12}")
                continue
            s = fr["metrics"].get(m)
            if s is None:
                print(f"   {head:<30} {f:<7} {'missing':>12}")
                continue
            ratio = ""
            if f != "goro":
                r = rec["ratios"].get(m, {}).get(f)
                ratio = f"{r:.2f}" if r is not None else "-"
            partial = "" if fr["ok_runs"] == runs else f"  ({fr['ok_runs']}/{runs} ok)"
            print(f"   {head:<30} {f:<7} {fmt_num(s['median']):>12} {fmt_num(s['min']):>12}"
                  f" {fmt_num(s['max']):>12}  {ratio:>9}{partial}")
    for f in FLAVOURS:
        fr = rec["flavours"][f]
        if fr["status"] == "ok" and 0 < fr["ok_runs"] < runs:
            errs = [r["error"] for r in fr["runs"] if r["error"]]
            notes.append(f"{f}: {errs[-1]}")
    seen = set()
    for n in notes:
        if n not in seen:
            seen.add(n)
            print("   ! " + n.replace("\n", "\n     "))


def print_summary(records: list[dict]) -> None:
    print()
    print("== summary: goro/peer ratio of medians (< 1: goro faster or cheaper)")
    print(f"   {'benchmark':<40} {'metric':<22} {'vs go':>15} {'vs fiber':>15} {'vs thread':>15}")
    for rec in records:
        only = GORO_ONLY_SUMMARY.get(rec["workload"])
        if only is not None:
            # No peers: the goro metric itself (e.g. preempt_cost's sysmon on/off ratio).
            g = rec["flavours"]["goro"]
            s = g.get("metrics", {}).get(only) if g["status"] == "ok" else None
            cell = f"{s['median']:.3f}" if s else g["status"]
            print(f"   {rec['label']:<40} {only:<22} {cell:>15}  (goro only)")
            continue
        for m, by_peer in rec["ratios"].items():
            cells = []
            for f in FLAVOURS[1:]:
                if f not in by_peer:
                    cells.append("")
                elif rec.get("not_implemented"):
                    cells.append(NOT_YET)
                elif by_peer[f] is None:
                    st = rec["flavours"][f]["status"]
                    gst = rec["flavours"]["goro"]["status"]
                    cells.append(f"goro {gst}" if gst != "ok" else (st if st != "ok" else "-"))
                else:
                    cells.append(f"{by_peer[f]:.2f}")
            name = f"{m} (peer/goro)" if m in HIGHER_IS_BETTER else m
            print(f"   {rec['label']:<40} {name:<22} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15}")


def host_info(go: str) -> dict:
    info = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "host": platform.node(), "kernel": platform.release(),
            "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        info["cpus_allowed"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["mem_gib"] = round(int(line.split()[1]) / (1024 * 1024), 1)
                    break
    except (OSError, ValueError, IndexError):
        pass
    try:
        info["glibc"] = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        info["glibc"] = " ".join(platform.libc_ver())
    try:
        info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    if shutil.which(go):
        try:
            info["go_version"] = subprocess.run([go, "version"], capture_output=True, text=True,
                                                timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return info


def cmake_cache(build_dir: Path) -> dict[str, str]:
    cache: dict[str, str] = {}
    try:
        for line in (build_dir / "CMakeCache.txt").read_text(errors="replace").splitlines():
            m = re.match(r"^([A-Za-z0-9_.-]+):[A-Z]+=(.*)$", line)
            if m:
                cache[m.group(1)] = m.group(2)
    except OSError:
        pass
    return cache


def toolchain_info(build_dir: Path) -> dict:
    """The C++ compiler, build type and Boost version the build directory was configured with."""
    cache = cmake_cache(build_dir)
    info: dict[str, str] = {}
    cxx = cache.get("CMAKE_CXX_COMPILER") or shutil.which("c++") or "c++"
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
        first = out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""
        info["cxx"] = f"{first} ({cxx})" if first else cxx
    except (OSError, subprocess.TimeoutExpired, IndexError):
        info["cxx"] = cxx
    if cache.get("CMAKE_BUILD_TYPE"):
        info["build_type"] = cache["CMAKE_BUILD_TYPE"]
    inc = Path(cache.get("Boost_INCLUDE_DIR") or "/usr/include")
    try:
        m = re.search(r"#define\s+BOOST_VERSION\s+(\d+)",
                      (inc / "boost" / "version.hpp").read_text())
        if m:
            v = int(m.group(1))
            info["boost"] = f"{v // 100000}.{v // 100 % 1000}.{v % 100}"
    except OSError:
        pass
    return info


def run_micro(build_dir: Path, timeout: float) -> dict:
    """Runs the Google Benchmark micro-benchmarks once; returns {"status", "benchmarks"...}."""
    path = build_dir / "bench" / "micro" / "goro_micro"
    if not (path.is_file() and os.access(path, os.X_OK)):
        return {"status": "not built", "binary": str(path)}
    cmd = [str(path), "--benchmark_min_time=0.1", "--benchmark_format=json"]
    log(f"compare.py: {' '.join(cmd)}")
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env=child_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "binary": str(path), "error": f"timed out after {timeout:g} s"}
    except OSError as e:
        return {"status": "failed", "binary": str(path), "error": f"cannot run: {e}"}
    try:
        doc = json.loads(p.stdout)
    except json.JSONDecodeError:
        tail = "\n".join(p.stderr.strip().splitlines()[-5:])
        return {"status": "failed", "binary": str(path),
                "error": f"exit status {p.returncode}, no JSON" + (f": {tail}" if tail else "")}
    scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
    rows = []
    for b in doc.get("benchmarks", []):
        if b.get("run_type", "iteration") != "iteration" or "real_time" not in b:
            continue
        k = scale.get(b.get("time_unit", "ns"), 1.0)
        rows.append({"name": b["name"], "ns_per_iter": b["real_time"] * k,
                     "cpu_ns_per_iter": b.get("cpu_time", 0.0) * k,
                     "iterations": b.get("iterations")})
    rec = {"status": "ok" if p.returncode == 0 else "failed", "binary": str(path),
           "command": " ".join(cmd), "benchmarks": rows}
    if p.returncode != 0:
        rec["error"] = f"exit status {p.returncode}"
    return rec


def print_micro(micro: dict) -> None:
    print()
    print("== runtime internals (Google Benchmark, bench/micro, one run, min time 0.1 s)")
    if micro["status"] != "ok" and not micro.get("benchmarks"):
        print(f"   {micro['status']}" + (f": {micro['error']}" if micro.get("error") else ""))
        return
    print(f"   {'benchmark':<40} {'ns/iter':>12} {'cpu ns/iter':>12} {'iterations':>12}")
    for b in micro["benchmarks"]:
        print(f"   {b['name']:<40} {fmt_num(b['ns_per_iter']):>12}"
              f" {fmt_num(b['cpu_ns_per_iter']):>12} {b['iterations'] or '':>12}")
    if micro.get("error"):
        print(f"   ! {micro['error']}")


# ---------------------------------------------------------------------------- report + chart

def chart_rows(records: list[dict]) -> list[tuple[str, dict[str, float | None], bool]]:
    """(label, {peer: ratio}, not_yet) for the chart, top to bottom."""
    rows = []
    for rec in records:
        wl = rec["workload"]
        metrics = CHART_METRICS.get(wl, METRICS[wl][:1])
        for m in metrics:
            if not rec["ratios"].get(m):  # missing, or no peers (preempt_cost)
                continue
            label = rec["label"] + (f"  [{m}]" if len(metrics) > 1 or m != METRICS[wl][0]
                                    else "")
            rows.append((label, dict(rec["ratios"][m]), bool(rec.get("not_implemented"))))
    return rows


PEER_COLOURS = {"go": "#00add8", "fiber": "#e07b39", "thread": "#7f7f7f"}


def chart_matplotlib(rows, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peers = FLAVOURS[1:]
    n = len(rows)
    fig, ax = plt.subplots(figsize=(11, 0.34 * n + 1.8))
    h = 0.8 / len(peers)
    vals = [r for _, by, _ in rows for r in by.values() if r]
    lo = min(vals + [0.5]) / 1.6
    hi = max(vals + [2.0]) * 1.6
    for j, f in enumerate(peers):
        ys, widths = [], []
        for i, (_, by, _) in enumerate(rows):
            r = by.get(f)
            if r:
                ys.append(i - 0.4 + h * (j + 0.5))
                widths.append(r - 1.0)
                ax.text(r, ys[-1], f" {r:.2f} " if r >= 0.01 else f" {r:.1g} ", va="center",
                        ha="left" if r >= 1 else "right", fontsize=6)
        # Bars grow from 1.0: to the left (< 1) goro is better, to the right the peer is.
        ax.barh(ys, widths, left=1.0, height=h * 0.9, color=PEER_COLOURS[f],
                label=f"goro / {f}" if f != "fiber" else "goro / Boost.Fiber")
    for i, (_, by, not_yet) in enumerate(rows):
        if not_yet:
            ax.text(1.0, i, "  not yet", va="center", ha="left", fontsize=8, style="italic",
                    color="#555555")
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(n))
    ax.set_yticklabels([lbl for lbl, _, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_ylim(n - 0.5, -0.5)
    ax.grid(axis="x", which="both", linestyle=":", linewidth=0.5, color="#bbbbbb")
    ax.set_xlabel("goro / peer, ratio of medians (log scale; < 1: goro better; "
                  "throughputs: peer / goro)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.text(0.0, 1.005, "← goro better", transform=ax.transAxes, fontsize=8,
            ha="left", va="bottom")
    ax.text(1.0, 1.005, "peer better →", transform=ax.transAxes, fontsize=8,
            ha="right", va="bottom")
    fig.tight_layout()
    fig.savefig(path, format=path.suffix.lstrip(".") or "svg")
    plt.close(fig)


def chart_gnuplot(rows, path: Path, title: str, gnuplot: str) -> None:
    import tempfile
    peers = FLAVOURS[1:]
    n = len(rows)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "ratios.dat"
        lines = []
        for i, (label, by, _) in enumerate(rows):
            cells = [f"{by[f]:.6g}" if by.get(f) else "NaN" for f in peers]
            lines.append(f"{i} " + " ".join(cells) + ' "' + label.replace('"', "'") + '"')
        data.write_text("\n".join(lines) + "\n")
        h = 0.8 / len(peers)
        plots = []
        for j, f in enumerate(peers):
            off = -0.4 + h * (j + 0.5)
            # boxxyerror: x, y, xlow, xhigh, ylow, yhigh; the bar spans 1.0 .. ratio.
            plots.append(f"'{data}' using (${j + 2}):($1+{off}):(1.0<$ {j + 2}?1.0:$ {j + 2})"
                         f":(1.0<$ {j + 2}?$ {j + 2}:1.0):($1+{off - h * 0.45})"
                         f":($1+{off + h * 0.45}) with boxxyerror fill solid "
                         f"lc rgb '{PEER_COLOURS[f]}' title 'goro / {f}'")
        plots[0] += f", '{data}' using (1.0):1:ytic(5) with points ps 0 notitle"
        script = "\n".join([
            f"set terminal svg size 1000,{int(26 * n + 140)} dynamic noenhanced font 'sans,10'",
            f"set output '{path}'",
            "set title '" + title.replace("'", "") + "'",
            "set logscale x", "set grid x",
            f"set yrange [{n - 0.5}:-0.5]",
            "set xlabel 'goro / peer, ratio of medians (log scale; < 1: goro better)'",
            "set arrow from 1,graph 0 to 1,graph 1 nohead lw 1.5 lc rgb 'black'",
            "set key bottom right",
            "plot " + ", ".join(plots).replace("$ ", "$"),
        ])
        sf = Path(tmp) / "chart.gp"
        sf.write_text(script + "\n")
        p = subprocess.run([gnuplot, str(sf)], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(p.stderr.strip() or f"gnuplot exit status {p.returncode}")


def write_chart(records: list[dict], path: Path, title: str) -> str:
    """Draws the ratio chart to `path`; returns how ("matplotlib", "gnuplot") or raises."""
    rows = chart_rows(records)
    try:
        chart_matplotlib(rows, path, title)
        return "matplotlib"
    except ImportError:
        pass
    # This interpreter (a virtualenv, pyenv...) may not see Debian's python3-matplotlib: let
    # the system's python3 draw it.
    for py in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if not os.access(py, os.X_OK) or os.path.realpath(py) == os.path.realpath(sys.executable):
            continue
        if subprocess.run([py, "-c", "import matplotlib"], capture_output=True,
                          timeout=60).returncode != 0:
            continue
        p = subprocess.run([py, str(Path(__file__).resolve()), "--draw-chart", str(path)],
                           input=json.dumps({"rows": rows, "title": title}), text=True,
                           capture_output=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"{py} could not draw the chart: "
                               + (p.stderr.strip().splitlines() or ["?"])[-1])
        return f"matplotlib, {py}"
    gnuplot = shutil.which("gnuplot")
    if gnuplot:
        chart_gnuplot(rows, path, title, gnuplot)
        return "gnuplot"
    raise RuntimeError("neither matplotlib (python3-matplotlib) nor gnuplot is installed")


def md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def md_cell(fr: dict, m: str) -> str:
    st = fr["status"]
    if st == "n/a":
        return ""
    if st != "ok":
        return st
    s = fr.get("metrics", {}).get(m)
    if s is None:
        return "missing"
    if s["min"] == s["max"]:
        return fmt_num(s["median"])
    return f"{fmt_num(s['median'])} ({fmt_num(s['min'])}–{fmt_num(s['max'])})"


def write_report(path: Path, records: list[dict], micro: dict | None, meta: dict,
                 command: str) -> None:
    chart_path = path.with_name("benchmarks.svg")
    title = (f"goro / peer ({meta.get('cpu_model', '?')}, {meta.get('cpus_allowed', '?')} CPUs, "
             f"{'quick' if meta.get('quick') else 'full'} suite, {meta['date'][:10]})")
    try:
        how = write_chart(records, chart_path, title)
        chart_md = (f"![goro/peer ratios per workload]({chart_path.name})\n\n"
                    f"Chart: {chart_path.name} ({how}). Bars grow from 1.0: to the left goro "
                    "is better, to the right the peer. One bar per peer for the main metric of "
                    "each configuration (both spawn and memory for `spawn_park`, p99 lateness "
                    "for the timers); throughputs are plotted as peer/goro.")
        log(f"compare.py: wrote {chart_path} ({how})")
    except Exception as e:  # noqa: BLE001 - a chart must never cost the report
        chart_md = f"no chart ({e})"
        log(f"compare.py: no chart: {e}")

    la0, la1 = meta.get("loadavg_start"), meta.get("loadavg_end")
    fmt_la = (lambda la: " / ".join(f"{x:.2f}" for x in la) if la else "?")
    out: list[str] = []
    w = out.append
    w("# goro benchmarks")
    w("")
    w("goro side by side with Go, Boost.Fiber (M:1) and std::thread, generated by "
      "`bench/compare.py` (see [bench/README.md](../bench/README.md) for what every workload "
      "does and where the flavours differ). Do not edit by hand: rerun the command below.")
    w("")
    w("## Machine and toolchain")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| CPU | {meta.get('cpu_model', '?')} |")
    cores = meta.get("cpus")
    allowed = meta.get("cpus_allowed")
    w(f"| cores | {cores}" + (f" ({allowed} allowed to this process)"
                              if allowed is not None and allowed != cores else "") + " |")
    w(f"| memory | {meta.get('mem_gib', '?')} GiB |")
    w(f"| kernel | Linux {meta.get('kernel', '?')} |")
    w(f"| glibc | {meta.get('glibc', '?')} |")
    w(f"| C++ compiler | {md_escape(meta.get('cxx', '?'))}, build type "
      f"{meta.get('build_type', '?')} (bench programs at -O2) |")
    w(f"| Go | {meta.get('go_version', 'not found')} |")
    w(f"| Boost (Boost.Fiber) | {meta.get('boost', 'not found')} |")
    w(f"| date | {meta['date']} |")
    w(f"| load average (1/5/15 min) | start {fmt_la(la0)}; end {fmt_la(la1)} "
      f"({meta.get('cpus', '?')} cores) |")
    w(f"| wall time | {meta.get('wall_s', 0):.0f} s |")
    w("")
    w("Command (from the repository root):")
    w("")
    w("```sh")
    w(command)
    w("```")
    w("")
    busy = la0 and cores and max(la0[0], (la1 or la0)[0]) > cores
    if busy:
        w(f"**The machine was shared**: the load average exceeded its {cores} cores while the "
          "suite ran, so absolute numbers are pessimistic and noisy (min-max ranges show how "
          "much); goro and its peers were interleaved run by run, so the ratios are "
          "fairer than the absolute values.")
        w("")
    w(f"Every cell is the median of {meta['runs']} runs with (min–max); the ratio "
      "columns are goro/peer ratios of medians: **< 1 means goro is faster or cheaper**. For "
      "throughputs (" + ", ".join(f"`{m}`" for m in sorted(HIGHER_IS_BETTER)) + ") the ratio "
      "is peer/goro, so < 1 still means goro is better. *not built*: the program is missing; "
      "*failed*: every run failed or timed out; *not yet*: goro's side of the workload does "
      "not exist yet.")
    w("")
    w("## Overview")
    w("")
    w(chart_md)
    w("")
    w("## Results per workload")
    by_wl: dict[str, list[dict]] = {}
    for rec in records:
        by_wl.setdefault(rec["workload"], []).append(rec)
    for wl in [x for x in WORKLOADS if x in by_wl]:
        recs = by_wl[wl]
        w("")
        w(f"### `{wl}`")
        w("")
        if wl in NOT_IMPLEMENTED:
            w(f"*{NOT_YET}*: {NOT_IMPLEMENTED[wl]}. No numbers until goro's side exists.")
            w("")
        flavs = [f for f in FLAVOURS if any(r["flavours"][f]["status"] != "n/a" for r in recs)]
        peers = [f for f in flavs if f != "goro"]
        # (joined as one list: a workload without peers, preempt_cost, has no ratio columns)
        w("| config | metric | " + " | ".join(flavs + [f"goro/{f}" for f in peers]) + " |")
        w("|---|---|" + "---:|" * (len(flavs) + len(peers)))
        notes: list[str] = []
        for rec in recs:
            cfg = rec["label"][len(wl):].strip() or "-"
            for m in METRICS[wl]:
                unit = next((rec["flavours"][f]["metrics"][m]["unit"] for f in FLAVOURS
                             if m in rec["flavours"][f].get("metrics", {})), None)
                mname = f"`{m}`" + (f" [{unit}]" if unit else "")
                if m in HIGHER_IS_BETTER:
                    mname += " (ratio peer/goro)"
                if rec.get("not_implemented"):
                    cells = [NOT_YET if rec["flavours"][f]["status"] != "n/a" else ""
                             for f in flavs]
                    rcells = [NOT_YET if f in rec["ratios"].get(m, {}) else "" for f in peers]
                else:
                    cells = [md_cell(rec["flavours"][f], m) for f in flavs]
                    rcells = []
                    for f in peers:
                        r = rec["ratios"].get(m, {}).get(f)
                        if f not in rec["ratios"].get(m, {}):
                            rcells.append("")
                        elif r is None:
                            rcells.append("-")
                        else:
                            rcells.append(f"**{r:.2f}**" if r < 1 else f"{r:.2f}")
                w(f"| {md_escape(cfg)} | {mname} | " + " | ".join(cells + rcells) + " |")
            for f in flavs:
                fr = rec["flavours"][f]
                if fr["status"] == "failed" and fr.get("error"):
                    notes.append(f"{cfg}, {f}: {fr['error'].splitlines()[0]}")
                elif fr["status"] == "ok" and 0 < fr.get("ok_runs", 0) < meta["runs"]:
                    errs = [r["error"] for r in fr["runs"] if r["error"]]
                    notes.append(f"{cfg}, {f}: {fr['ok_runs']}/{meta['runs']} runs ok; "
                                 f"{errs[-1].splitlines()[0]}")
        for n in dict.fromkeys(notes):
            w("")
            w(f"- {md_escape(n)}")
    w("")
    w("## Runtime internals")
    w("")
    if micro is None:
        w("Not run (`--no-micro`).")
    elif not micro.get("benchmarks"):
        w(f"`bench/micro/goro_micro` (Google Benchmark): {micro['status']}"
          + (f" ({micro['error']})" if micro.get("error") else "") + ".")
    else:
        w("Google Benchmark micro-benchmarks of goro's internals (`bench/micro`), one run: "
          f"`{micro['command'].replace(str(REPO_DIR) + '/', '')}`.")
        w("")
        w("| benchmark | ns per iteration | CPU ns per iteration | iterations |")
        w("|---|---:|---:|---:|")
        for b in micro["benchmarks"]:
            w(f"| `{b['name']}` | {fmt_num(b['ns_per_iter'])} | "
              f"{fmt_num(b['cpu_ns_per_iter'])} | {b['iterations'] or ''} |")
        if micro.get("error"):
            w("")
            w(f"- {micro['error']}")
    w("")
    path.write_text("\n".join(out))
    log(f"compare.py: wrote {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default="build/release",
                    help="CMake build directory (relative to the repository root unless "
                         "absolute; default build/release); programs are in its bench/")
    ap.add_argument("--quick", action="store_true", help="fewer sizes, 3 runs")
    ap.add_argument("--runs", type=int, default=None, help="runs per flavour (default 5; "
                                                           "3 with --quick)")
    ap.add_argument("--only", default=None,
                    help="comma-separated workloads: " + ",".join(WORKLOADS))
    ap.add_argument("--json", default=None, metavar="PATH", help="write results as JSON")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds allowed to each process (default 120)")
    ap.add_argument("--go", default="go", help="the go command (default: go on PATH)")
    ap.add_argument("--no-go-build", action="store_true",
                    help="use the bench_go_* binaries already in the build dir")
    ap.add_argument("--report", default=None, metavar="PATH",
                    help="write a Markdown report (machine, toolchain, command, one table per "
                         "workload, runtime internals) to PATH and its ratio chart next to it "
                         "as benchmarks.svg, e.g. --report docs/benchmarks.md")
    ap.add_argument("--no-micro", action="store_true",
                    help="skip the Google Benchmark micro-benchmarks (bench/micro/goro_micro)")
    opts = ap.parse_args()
    t_start = time.monotonic()
    command = "python3 " + shlex.join([sys.argv[0]] + sys.argv[1:])

    runs = opts.runs if opts.runs is not None else (3 if opts.quick else 5)
    if runs < 1:
        ap.error("--runs must be at least 1")
    build_dir = Path(opts.build_dir)
    if not build_dir.is_absolute():
        cwd_rel = Path.cwd() / build_dir
        build_dir = cwd_rel if cwd_rel.is_dir() else REPO_DIR / build_dir
    wanted = WORKLOADS
    if opts.only:
        wanted = [w.strip() for w in opts.only.split(",") if w.strip()]
        bad = [w for w in wanted if w not in WORKLOADS]
        if bad:
            ap.error(f"unknown workload(s) {','.join(bad)}; choose from {','.join(WORKLOADS)}")
    cfgs = [c for c in configs(opts.quick) if c.workload in wanted]

    if not (build_dir / "bench").is_dir():
        log(f"compare.py: {build_dir / 'bench'} does not exist: the C++ flavours are not built")
    go_errors: dict[str, str] = {}
    if not opts.no_go_build:
        log(f"compare.py: building the Go programs into {build_dir / 'bench'}")
        go_errors = build_go(build_dir, sorted({c.prog for c in cfgs
                                                if c.workload not in NOT_IMPLEMENTED
                                                and "go" in c.flavours}), opts.go)

    info = host_info(opts.go)
    print(f"goro vs Go / Boost.Fiber (M:1) / std::thread -- {info.get('cpu_model', '?')}, "
          f"{info.get('cpus_allowed', info['cpus'])} CPUs, {info.get('go_version', 'no go')}")
    print(f"build dir {build_dir}; metrics: median/min/max of {runs} runs; "
          "goro/peer = ratio of medians (< 1: goro faster or cheaper)")
    sys.stdout.flush()

    records = []
    for cfg in cfgs:
        log(f"compare.py: {cfg.label}")
        rec = run_config(cfg, build_dir, runs, opts.timeout, go_errors)
        records.append(rec)
        print_config(rec, runs)
        sys.stdout.flush()
    print_summary(records)
    micro = None
    if not opts.no_micro:
        micro = run_micro(build_dir, opts.timeout)
        print_micro(micro)
        sys.stdout.flush()

    info.update(toolchain_info(build_dir))
    try:
        info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    info["wall_s"] = round(time.monotonic() - t_start, 1)
    meta = dict(info, runs=runs, quick=opts.quick, build_dir=str(build_dir),
                timeout_s=opts.timeout, command=command,
                peer_over_goro_metrics=sorted(HIGHER_IS_BETTER))
    log(f"compare.py: done in {info['wall_s']:.0f} s; load average "
        f"{info.get('loadavg_start')} -> {info.get('loadavg_end')}")
    if opts.report:
        write_report(Path(opts.report), records, micro, meta, command)
    if opts.json:
        doc = {"meta": meta, "results": records, "micro": micro}
        Path(opts.json).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"compare.py: wrote {opts.json}")
    return 0


def draw_chart_main(path: str) -> int:
    """`compare.py --draw-chart PATH`, rows and title as JSON on stdin (see write_chart)."""
    doc = json.load(sys.stdin)
    chart_matplotlib([tuple(r) for r in doc["rows"]], Path(path), doc["title"])
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--draw-chart":
        sys.exit(draw_chart_main(sys.argv[2]))
    sys.exit(main())
