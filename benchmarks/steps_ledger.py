"""The device run's bookkeeping (benchmarks/device_check.sh; docs/performance.md 4.3). Standard
library only, so it runs before anything is known about the machine.

    python benchmarks/steps_ledger.py preflight --out DIR --mode gpu|smoke [--quick]
    python benchmarks/steps_ledger.py init LEDGER --mode M --budget S --min-start S NAME:BUDGET...
    python benchmarks/steps_ledger.py record LEDGER NAME OUTCOME [--code C] [--reason R] ...
    python benchmarks/steps_ledger.py show LEDGER
    python benchmarks/steps_ledger.py exec -- COMMAND...

preflight: the versions (python, torch, triton, transformers, CUDA), the GPU (nvidia-smi), the
build tools (ninja, nvcc, Python.h) and which optional modules import, probed in parallel
subprocesses (each within --timeout); writes DIR/preflight.json and DIR/preflight.env (shell
variables the skip rules of device_check.sh read). --quick looks modules up without importing
any (the --plan listing).

init / record: LEDGER (steps.json) holds every step of the run in order with its budget, and
for each step that started or was skipped: start and end (epoch seconds), seconds, the limit it
ran under, outcome (ok, failed, timeout, skipped; running while it runs), exit code, skip
reason and log. Every change rewrites the file atomically (a temporary file, then rename), so a
run cut short at any point leaves a whole ledger behind.

exec: runs COMMAND with SIGINT at its default action (a shell that started in the background
may pass it on ignored), so that `timeout -s INT` interrupts a Python step with a traceback and,
for pytest, a summary.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

OPTIONAL = ("deepspeed", "soundfile", "yaml", "jiwer", "xdist", "pytest_benchmark", "matplotlib", "peft", "pytest")
HEAVY = ("deepspeed", "peft")  # these import torch: one process of their own, beside torch's
PROBE_TIMEOUT_S = 8.0

TORCH_PROBE = """
import json, torch
info = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
if info["cuda_available"]:
    info["gpu"] = torch.cuda.get_device_name()
    info["gpu_count"] = torch.cuda.device_count()
    info["capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
for name in ("triton", "transformers"):
    try:
        info[name] = __import__(name).__version__
    except Exception as exc:
        info[name] = None
        info[name + "_error"] = f"{type(exc).__name__}: {exc}"[:300]
try:  # what `python -m elp_fast.info` shows: the native build and every backend's availability
    from elp_fast import info as elp_info
    data = elp_info.collect()
    info["elp_fast"] = {"native": data["native"], "backends": data["backends"]}
except Exception as exc:
    info["elp_fast"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
print(json.dumps(info, default=str))
"""

MODULE_PROBE = """
import importlib, json, sys
out = {}
for name in sys.argv[1:]:
    try:
        out[name] = {"imports": True, "version": str(getattr(importlib.import_module(name), "__version__", ""))}
    except Exception as exc:
        out[name] = {"imports": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
print(json.dumps(out))
"""


def _run(cmd: list, timeout: float = PROBE_TIMEOUT_S, env: dict | None = None) -> tuple[int | None, str]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        return p.returncode, (p.stdout + p.stderr).strip()
    except FileNotFoundError as exc:
        return None, str(exc)
    except subprocess.TimeoutExpired:
        return None, f"no answer within {timeout:.0f} s"


def _json_probe(code: str, *args: str, env: dict | None = None, timeout: float = PROBE_TIMEOUT_S) -> dict:
    """Run `code` in a fresh interpreter; its last line of stdout is the JSON answer (whatever
    it logs goes to stderr, kept for the error)."""
    try:
        p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                           env=env)
    except subprocess.TimeoutExpired:
        return {"probe_error": f"no answer within {timeout:.0f} s"}
    lines = p.stdout.strip().splitlines()
    if p.returncode == 0 and lines:
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError:
            pass
    return {"probe_error": (p.stdout + p.stderr).strip()[-500:] or f"exit {p.returncode}"}


def _nvcc() -> str | None:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and (Path(home) / "bin" / "nvcc").is_file():
        return str(Path(home) / "bin" / "nvcc")
    return shutil.which("nvcc") or (shutil.which("nvcc", path="/usr/local/cuda/bin"))


def _installed(wheel: str) -> bool:
    """Whether .site/ holds this wheel's distribution at its version (NAME-VERSION.dist-info)."""
    name, version = wheel.split("-")[:2]
    want = f"{name}-{version}.dist-info".lower().replace("_", "-")
    site = Path(".site")
    return site.is_dir() and any(p.name.lower().replace("_", "-") == want for p in site.glob("*.dist-info"))


def preflight(mode: str, quick: bool, timeout: float = PROBE_TIMEOUT_S) -> dict:
    t0 = time.monotonic()
    bindir = str(Path(sys.executable).parent)
    search = bindir + os.pathsep + os.environ.get("PATH", "")
    include = sysconfig.get_paths()["include"]
    facts: dict = {"mode": mode, "quick": quick, "time": time.time(), "python": sys.version.split()[0],
                   "python_executable": sys.executable, "python_bin": bindir, "nproc": os.cpu_count(),
                   "python_h": str(Path(include) / "Python.h") if (Path(include) / "Python.h").is_file() else None,
                   "python_include": include, "ninja": shutil.which("ninja", path=search), "nvcc": _nvcc(),
                   "nvidia_smi": shutil.which("nvidia-smi")}
    wheels = sorted(p.name for p in Path(".whl").glob("*.whl")) if Path(".whl").is_dir() else []
    facts["wheels"] = wheels
    facts["wheels_installed"] = bool(wheels) and all(_installed(w) for w in wheels)
    if quick:
        facts["modules"] = {m: {"found": importlib.util.find_spec(m) is not None} for m in OPTIONAL}
        facts["seconds"] = round(time.monotonic() - t0, 2)
        return facts
    env = {**os.environ, "TRITON_INTERPRET": "1" if mode == "smoke" else "0"}
    light = [m for m in OPTIONAL if m not in HEAVY]
    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
        torch_f = pool.submit(_json_probe, TORCH_PROBE, env=env, timeout=timeout)
        light_f = pool.submit(_json_probe, MODULE_PROBE, *light, timeout=timeout)
        heavy_f = pool.submit(_json_probe, MODULE_PROBE, *HEAVY, timeout=timeout)
        smi_f = pool.submit(_run, ["nvidia-smi", "--query-gpu=name,memory.total,clocks.max.sm,driver_version",
                                   "--format=csv,noheader"], timeout) if facts["nvidia_smi"] else None
        nvcc_f = pool.submit(_run, [facts["nvcc"], "--version"], timeout) if facts["nvcc"] else None
        facts.update(torch_f.result())
        modules = {**light_f.result(), **heavy_f.result()}
        facts["modules"] = {m: modules.get(m, {"imports": False, "error": modules.get("probe_error", "")})
                            for m in OPTIONAL}
        if smi_f is not None:
            facts["nvidia_smi_gpu"] = smi_f.result()[1]
        if nvcc_f is not None:
            facts["nvcc_version"] = (nvcc_f.result()[1].splitlines() or [""])[-1]
    facts["seconds"] = round(time.monotonic() - t0, 2)
    return facts


def _no_cuda_why(facts: dict) -> str:
    if facts.get("quick"):
        return "no nvidia-smi on PATH (no NVIDIA driver)"
    if "torch" not in facts:
        return "torch does not import"
    return f"torch {facts['torch']} sees no CUDA device (torch.cuda.is_available() is False)"


def shell_vars(facts: dict) -> dict:
    """What device_check.sh's skip rules read: HAVE_<thing> = 1 or 0, and a few paths."""
    def has(m: str) -> bool:
        entry = facts["modules"].get(m, {})
        return bool(entry.get("imports", entry.get("found", False)))
    torch_ok = "torch" in facts or facts.get("quick")
    native = facts.get("elp_fast", {}).get("native", {}) if not facts.get("quick") else {"loaded": True}
    out = {"PY_BIN": facts["python_bin"], "NPROC": facts["nproc"] or 1, "PYTHON_INCLUDE": facts["python_include"],
           "HAVE_PYTHON_H": facts["python_h"] is not None, "HAVE_NINJA": facts["ninja"] is not None,
           "HAVE_NVCC": facts["nvcc"] is not None, "HAVE_TORCH": bool(torch_ok),
           "HAVE_TORCH_CUDA": bool(facts.get("torch_cuda") or facts.get("quick")),
           "TORCH_VERSION": facts.get("torch") or "",
           # --quick imports no torch: a machine with nvidia-smi is taken to have a device.
           "HAVE_CUDA": bool(facts["nvidia_smi"] if facts.get("quick") else facts.get("cuda_available")),
           "NO_CUDA_WHY": _no_cuda_why(facts),
           "HAVE_NATIVE": bool(native.get("loaded")), "NATIVE_WHY": native.get("reason", "not probed"),
           "HAVE_WHEELS": bool(facts["wheels"]), "WHEELS_INSTALLED": facts["wheels_installed"],
           "PROBED": "quick" if facts.get("quick") else "imports"}
    for m in OPTIONAL:
        out[f"HAVE_{m.upper()}"] = has(m)
    return {k: (int(v) if isinstance(v, bool) else v) for k, v in out.items()}


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def cmd_preflight(args) -> int:
    facts = preflight(args.mode, args.quick, args.timeout)
    _atomic_write(args.out / "preflight.json", json.dumps(facts, indent=1) + "\n")
    _atomic_write(args.out / "preflight.env",
                  "".join(f"{k}={shlex.quote(str(v))}\n" for k, v in shell_vars(facts).items()))
    if not args.quick:
        mods = ", ".join(f"{m} {'yes' if v.get('imports') else 'no'}" for m, v in facts["modules"].items())
        print(f"python {facts['python']}  torch {facts.get('torch')}  triton {facts.get('triton')}  "
              f"transformers {facts.get('transformers')}  CUDA {facts.get('torch_cuda')}")
        print(f"GPU {facts.get('nvidia_smi_gpu') or facts.get('gpu') or 'none'}  "
              f"(torch sees CUDA: {facts.get('cuda_available')})")
        print(f"ninja {facts['ninja']}  nvcc {facts['nvcc']} {facts.get('nvcc_version', '')}  "
              f"Python.h {facts['python_h'] or 'missing under ' + facts['python_include']}")
        print(f"modules: {mods}")
        native = facts.get("elp_fast", {}).get("native", {})
        print(f"native extension: {'loaded' if native.get('loaded') else native.get('reason', '?')}")
        print(f"wheels in .whl/: {len(facts['wheels'])}  ({facts['seconds']} s)")
        if "torch" not in facts:
            print(f"torch does not import: {facts.get('probe_error', '')}")
            return 1
    return 0


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def cmd_init(args) -> int:
    steps = []
    for spec in args.steps:
        name, _, budget = spec.partition(":")
        steps.append({"name": name, "budget_s": int(budget), "outcome": "pending"})
    ledger = {"mode": args.mode, "budget_s": args.budget, "min_start_s": args.min_start, "started": time.time(),
              "updated": time.time(), "steps": steps}
    _atomic_write(args.ledger, json.dumps(ledger, indent=1) + "\n")
    return 0


def cmd_record(args) -> int:
    ledger = _load(args.ledger)
    matches = [s for s in ledger["steps"] if s["name"] == args.name]
    if not matches:
        print(f"steps_ledger: no step {args.name!r} in {args.ledger}", file=sys.stderr)
        return 2
    step = matches[0]
    step["outcome"] = args.outcome
    for key, value in (("start", args.start), ("end", args.end), ("limit_s", args.limit), ("code", args.code),
                       ("reason", args.reason), ("log", args.log)):
        if value is not None:
            step[key] = value
    if "start" in step and "end" in step:
        step["seconds"] = round(step["end"] - step["start"], 2)
    ledger["updated"] = time.time()
    _atomic_write(args.ledger, json.dumps(ledger, indent=1) + "\n")
    return 0


def cmd_show(args) -> int:
    ledger = _load(args.ledger)
    print(f"{'step':20s} {'budget':>7s} {'seconds':>8s}  outcome")
    for s in ledger["steps"]:
        outcome = s["outcome"] + (f" (exit {s['code']})" if s["outcome"] == "failed" else "")
        if s.get("reason"):
            outcome += f": {s['reason']}"
        secs = f"{s['seconds']:.1f}" if "seconds" in s else "-"
        print(f"{s['name']:20s} {s['budget_s']:>6d}s {secs:>8s}  {outcome}")
    spent = ledger["updated"] - ledger["started"]
    print(f"{spent:.0f} s of the {ledger['budget_s']} s budget used")
    return 0


def cmd_exec(args) -> int:
    if not args.command:
        print("steps_ledger exec: no command", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execvp(args.command[0], args.command)
    return 127  # not reached


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pf = sub.add_parser("preflight", help="probe the machine; write preflight.json and preflight.env")
    pf.add_argument("--out", type=Path, required=True)
    pf.add_argument("--mode", choices=("gpu", "smoke"), required=True)
    pf.add_argument("--quick", action="store_true", help="look modules up without importing them")
    pf.add_argument("--timeout", type=float, default=PROBE_TIMEOUT_S, help="seconds each probe may take")
    pf.set_defaults(fn=cmd_preflight)
    it = sub.add_parser("init", help="start a ledger with every step pending")
    it.add_argument("ledger", type=Path)
    it.add_argument("--mode", required=True)
    it.add_argument("--budget", type=int, required=True)
    it.add_argument("--min-start", type=int, required=True)
    it.add_argument("steps", nargs="+", help="NAME:BUDGET_S, in run order")
    it.set_defaults(fn=cmd_init)
    rc = sub.add_parser("record", help="set one step's outcome and times")
    rc.add_argument("ledger", type=Path)
    rc.add_argument("name")
    rc.add_argument("outcome", choices=("running", "ok", "failed", "timeout", "skipped"))
    rc.add_argument("--start", type=float)
    rc.add_argument("--end", type=float)
    rc.add_argument("--limit", type=int)
    rc.add_argument("--code", type=int)
    rc.add_argument("--reason")
    rc.add_argument("--log")
    rc.set_defaults(fn=cmd_record)
    sh = sub.add_parser("show", help="print the ledger as a table")
    sh.add_argument("ledger", type=Path)
    sh.set_defaults(fn=cmd_show)
    ex = sub.add_parser("exec", help="run a command with SIGINT at its default action")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    ex.set_defaults(fn=cmd_exec)
    args = p.parse_args(argv)
    if args.cmd == "exec" and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
