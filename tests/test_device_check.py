"""benchmarks/device_check.sh, the GPU machine's one script (docs/performance.md 4.3): the plan of
both modes, the ledger (steps.json) with its budget skips and time limits, the first-contact
results written as they come, and the whole --smoke run, step by step."""
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.sh"
STEPS = ["wheels", "preflight", "first-contact", "build", "first-contact-native", "warm", "gpu-tests",
         "bench-bottleneck", "bench-layers", "saved-bytes", "bench-e2e", "bench-zero", "task-smoke",
         "bench-ops-compile", "bench-e2e-compile", "report"]
OPS = {"bottleneck_adapter", "layer_aggregate", "weighted_layer_sum"}
OUTCOMES = {"ok", "failed", "timeout", "skipped"}


def device_check(out: Path, *args: str, timeout: float, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ELP_DEVICE_")}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**clean, "PYTHON": sys.executable, "OUT": str(out), **env})


def ledger(out: Path) -> dict:
    data = json.loads((out / "steps.json").read_text())
    assert [s["name"] for s in data["steps"]] == STEPS, "steps.json: every step, in run order"
    for s in data["steps"]:
        assert s["outcome"] in OUTCOMES, s
        assert s["budget_s"] >= 0
        if s["outcome"] == "skipped":
            assert s["reason"], s
        else:
            assert s["end"] >= s["start"] and abs(s["seconds"] - (s["end"] - s["start"])) < 0.05, s
            assert 0 < s["limit_s"] <= s["budget_s"] and isinstance(s["code"], int), s
    return {s["name"]: s for s in data["steps"]}


def first_contact(out: Path) -> list:
    return [json.loads(line) for line in (out / "first-contact.jsonl").read_text().splitlines()]


def native_built() -> bool:
    from elp_fast.ops import _native
    return _native.available() is None


# ids without "gpu": conftest skips tests whose keywords hold that word on a CPU machine.
@pytest.mark.parametrize("mode", ["gpu", "smoke"], ids=["card", "cpu-smoke"])
def test_plan_lists_the_steps_in_order_and_runs_nothing(tmp_path, mode):
    args = ("--plan",) if mode == "gpu" else ("--plan", "--smoke")
    proc = device_check(tmp_path / "out", *args, timeout=60, ELP_DEVICE_STEP_S="bench-e2e=7")
    assert proc.returncode == 0, proc.stderr
    rows = re.findall(r"^\s*(\d+)\s+(\S+)\s+(\d+) s\b(.*)$", proc.stdout, re.M)
    assert [r[1] for r in rows] == STEPS, proc.stdout
    assert [int(r[0]) for r in rows] == list(range(1, len(STEPS) + 1))
    budgets = {r[1]: int(r[2]) for r in rows}
    assert budgets["bench-e2e"] == 7 and all(b > 0 for b in budgets.values())
    assert f"({mode}): {420 if mode == 'gpu' else 1200} s in all" in proc.stdout
    wheels = next(r for r in rows if r[1] == "wheels")
    if not list(ROOT.glob(".whl/*.whl")):
        assert "would skip: no wheels in .whl/" in wheels[3]
    assert not (tmp_path / "out").exists(), "--plan must not write anything"


def plan_budgets(tmp_path, *args: str) -> dict:
    proc = device_check(tmp_path / "out", "--plan", *args, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return {name: int(b) for name, b in re.findall(r"^\s*\d+\s+(\S+)\s+(\d+) s\b", proc.stdout, re.M)}


def test_performance_doc_lists_the_plan(tmp_path):
    """docs/performance.md 4.3: its table of steps is the script's plan, budgets of both modes."""
    doc = (ROOT / "docs" / "performance.md").read_text()
    section = doc[doc.index("### 4.3 The device run"):doc.index("## 5. Results")]
    rows = re.findall(r"^\| (\d+) \| `([^`]+)` \| (\d+) s / (\d+) s \|", section, re.M)
    assert [r[1] for r in rows] == STEPS
    assert {r[1]: int(r[2]) for r in rows} == plan_budgets(tmp_path)
    assert {r[1]: int(r[3]) for r in rows} == plan_budgets(tmp_path, "--smoke")


def test_bad_knobs_are_refused(tmp_path):
    proc = device_check(tmp_path, "--plan", timeout=60, ELP_DEVICE_STEP_S="gpu-test=5")
    assert proc.returncode == 2 and "names no step 'gpu-test'" in proc.stderr
    proc = device_check(tmp_path, "--plan", timeout=60, ELP_DEVICE_BUDGET_S="7m")
    assert proc.returncode == 2 and "whole seconds" in proc.stderr
    proc = device_check(tmp_path, "--fast", timeout=60)
    assert proc.returncode == 2 and "unknown argument --fast" in proc.stderr


def test_a_spent_budget_skips_every_step(tmp_path):
    proc = device_check(tmp_path, "--smoke", timeout=120, ELP_DEVICE_BUDGET_S="0")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = ledger(tmp_path)
    for name in STEPS:
        assert steps[name]["outcome"] == "skipped"
        assert steps[name]["reason"].startswith("budget: 0 s of the 0 s run left"), steps[name]


@pytest.mark.slow
def test_budget_cut_run_keeps_first_contact(tmp_path):
    """Preflight and first contact run; every later step is skipped for its budget; the results
    of first contact (every op, every backend that runs here, the model step) are on disk."""
    later = STEPS[STEPS.index("first-contact") + 1:]
    pack = tmp_path / "device-run.tar.gz"
    proc = device_check(tmp_path, "--smoke", timeout=600, ELP_DEVICE_STEP_S=",".join(f"{s}=0" for s in later),
                        ELP_DEVICE_PACK=str(pack))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = ledger(tmp_path)
    with tarfile.open(pack) as archive:  # the one-file copy of the run, renewed after every step
        names = set(archive.getnames())
        assert {"./steps.json", "./first-contact.jsonl", "./preflight.json"} <= names, names
        assert json.loads(archive.extractfile("./steps.json").read()) == json.loads((tmp_path / "steps.json").read_text())
    assert steps["preflight"]["outcome"] == "ok" and steps["first-contact"]["outcome"] == "ok", steps
    for name in later:
        assert steps[name]["outcome"] == "skipped" and steps[name]["reason"].startswith("budget: 0 s"), steps[name]
    facts = json.loads((tmp_path / "preflight.json").read_text())
    assert facts["torch"] and facts["python_h"] and "deepspeed" in facts["modules"]
    records = first_contact(tmp_path)
    backends = {"triton", "native"} if native_built() else {"triton"}
    ops = [r for r in records if r["kind"] == "op"]
    assert {r["backend"] for r in ops} == backends
    for b in backends:
        mine = [r for r in ops if r["backend"] == b]
        assert {r["op"] for r in mine} == OPS and len(mine) == 8, mine
        assert {r["variant"] for r in mine if r["op"] == "bottleneck_adapter"} == {"residual", "residual+post_ln"}
    assert all(r["status"] == "ok" and r["gate"] == "ok" and r["ms"] > 0 for r in ops), ops
    models = [r for r in records if r["kind"] == "model"]
    assert {r["backend"] for r in models} == backends and all(r["status"] == "ok" for r in models), models
    assert records[-1]["kind"] == "summary" and records[-1]["failed"] == 0


@pytest.mark.slow
def test_a_step_past_its_limit_is_interrupted_and_recorded(tmp_path):
    """first-contact gets 4 s: SIGINT (a Python traceback in its log), outcome timeout, and the
    lines it wrote before are whole; the run goes on to the next step."""
    after = STEPS[STEPS.index("first-contact") + 1:]
    budgets = ["first-contact=4"] + [f"{s}=0" for s in after if s != "report"]
    proc = device_check(tmp_path, "--smoke", timeout=300, ELP_DEVICE_STEP_S=",".join(budgets))
    assert proc.returncode == 1, proc.stdout[-3000:]
    steps = ledger(tmp_path)
    fc = steps["first-contact"]
    assert fc["outcome"] == "timeout" and fc["code"] == 124 and fc["limit_s"] == 4, fc
    assert fc["seconds"] < 4 + 10 + 2
    assert "KeyboardInterrupt" in (tmp_path / "first-contact.log").read_text()
    if (tmp_path / "first-contact.jsonl").exists():
        first_contact(tmp_path)  # whole lines only
    assert steps["report"]["outcome"] in ("ok", "skipped")  # reached after the timeout


@pytest.mark.slow
def test_full_smoke_run_every_step_in_order(tmp_path):
    proc = device_check(tmp_path, "--smoke", timeout=1500)
    steps = ledger(tmp_path)
    native = native_built()
    may_skip = {"wheels": "no wheels in .whl/", **({} if native else {
        "first-contact-native": "the checkout's extension does not load"})}
    bad = {n: s for n, s in steps.items() if s["outcome"] != "ok"
           and not (s["outcome"] == "skipped" and s["reason"].startswith(may_skip.get(n, "?")))}
    assert not bad, f"{bad}\n{proc.stdout[-4000:]}"
    assert proc.returncode == 0
    records = first_contact(tmp_path)
    # first-contact, then first-contact-native
    assert sum(r["kind"] == "summary" for r in records) == (2 if native else 1)
    assert all(r.get("status", "ok") in ("ok", "unavailable") for r in records)
    assert {r["backend"] for r in records if r["kind"] == "op"} == ({"triton", "native"} if native else {"triton"})
    assert "<testcase" in (tmp_path / "gpu-tests.xml").read_text()
    for csv in ("bench-bottleneck", "bench-layers", "saved-bytes", "bench-e2e", "bench-zero", "bench-ops-compile",
                "bench-e2e-compile"):
        assert (tmp_path / f"{csv}.csv").stat().st_size > 0, csv
    assert list(tmp_path.glob("*.png")), "report: the charts"
