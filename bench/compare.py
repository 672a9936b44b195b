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
(a variant workload such as timers_busy runs its base workload's programs with other flags).
A flavour whose program is missing is reported as "not built". Every program prints lines
`RESULT <metric>=<value> <unit>` on stdout; each process runs under a timeout (120 s).

    python3 bench/compare.py                      # all workloads and sizes, 5 runs each
    python3 bench/compare.py --quick              # fewer sizes, 3 runs
    python3 bench/compare.py --only yield,fib --json results.json

Standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
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
             "chan_throughput", "select4", "timers", "timers_busy", "mutex"]
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
}
# Metrics where more is better (throughputs): their ratio column is peer/goro instead, so that
# every ratio reads the same way (< 1: goro better).
HIGHER_IS_BETTER = {"mops"}
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
        return f"{self.workload} " + " ".join(parts)


def configs(quick: bool) -> list[Config]:
    every = ["goro", "go", "fiber", "thread"]
    no_thread = ["goro", "go", "fiber"]
    if quick:
        return [
            Config("yield", {"n": 2_000_000}, every, {"thread": {"n": 1_000_000}}),
            Config("spawn_complete", {"n": 200_000, "procs": 1}, no_thread),
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
        ]
    return [
        Config("yield", {"n": 10_000_000}, every, {"thread": {"n": 2_000_000}}),
        Config("spawn_complete", {"n": 1_000_000, "procs": 1}, no_thread),
        Config("spawn_complete", {"n": 1_000_000, "procs": 2}, ["goro", "go"]),
        Config("spawn_complete", {"n": 10_000}, ["goro", "go", "thread"]),
        Config("spawn_run", {"n": 10_000}, every),
        Config("spawn_run", {"n": 1_000_000}, no_thread),
        Config("fib", {"n": 27, "procs": 1}, no_thread),     # Boost.Fiber is M:1 here
        Config("fib", {"n": 27, "procs": 2}, ["goro", "go"]),
        Config("spawn_park", {"n": 10_000}, every),          # threads only at 10,000
        Config("spawn_park", {"n": 100_000}, no_thread),
        Config("spawn_park", {"n": 1_000_000}, no_thread),
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
    ]


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


def run_once(path: Path, args: dict[str, int], timeout: float) -> Run:
    cmd = [str(path)]
    for k, v in args.items():
        cmd += [f"-{k}", str(v)]
    t0 = time.monotonic()
    try:
        # Its own session, so that a timeout ends whatever it started too.
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=child_env(), stdin=subprocess.DEVNULL, start_new_session=True)
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


def fmt_num(v: float) -> str:
    a = abs(v)
    if a >= 10000:
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
    present: list[str] = []
    for f in FLAVOURS:
        if f not in cfg.flavours:
            flav[f] = {"status": "n/a"}
            continue
        path = binary(build_dir, f, cfg.prog)
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
            r = run_once(Path(flav[f]["binary"]), cfg.flavour_args(f), timeout)
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
        for m, by_peer in rec["ratios"].items():
            cells = []
            for f in FLAVOURS[1:]:
                if f not in by_peer:
                    cells.append("")
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
    if shutil.which(go):
        try:
            info["go_version"] = subprocess.run([go, "version"], capture_output=True, text=True,
                                                timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return info


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
    opts = ap.parse_args()

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
        go_errors = build_go(build_dir, sorted({c.prog for c in cfgs}), opts.go)

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

    if opts.json:
        doc = {"meta": dict(info, runs=runs, quick=opts.quick, build_dir=str(build_dir),
                            timeout_s=opts.timeout,
                            peer_over_goro_metrics=sorted(HIGHER_IS_BETTER)),
               "results": records}
        Path(opts.json).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"compare.py: wrote {opts.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
