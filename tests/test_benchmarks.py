"""The benchmark scripts' smoke modes run end to end (so they do not rot between real runs); the
profiler breakdown, the target verdicts, the generated results section of docs/performance.md and
the charts are checked against what they are built from."""
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from elp_fast.ops import _native

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_ops  # noqa: E402
import harness  # noqa: E402
import report  # noqa: E402
import step_profile  # noqa: E402
import targets  # noqa: E402


def _script(name: str, tmp_path, *args: str, interpret: bool = False, timeout: int = 600):
    """Run benchmarks/<name> with --out in tmp_path; returns (stdout, rows of the CSV)."""
    out = tmp_path / f"{name}.csv"
    env = {**os.environ, "TRITON_INTERPRET": "1"} if interpret else None
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args, "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, list(csv.DictReader(out.open()))


def test_bench_ops_smoke(tmp_path):
    pytest.importorskip("triton")
    stdout, rows = _script("bench_ops.py", tmp_path, "--smoke", "--compile", interpret=True)
    ops = {"bottleneck_adapter", "layer_aggregate", "weighted_layer_sum"}
    providers = {"eager", "compile", "reference", "triton"} | ({"native"} if _native.available() is None else set())
    assert {(r["op"], r["provider"], r["mode"]) for r in rows} == {
        (o, p, m) for o in ops for p in providers for m in ("fwd", "bwd", "fwd+bwd")}
    for r in rows:
        assert r["gate"] == "ok", r
        assert float(r["median_ms"]) > 0 and float(r["p20_ms"]) <= float(r["p80_ms"])
        assert float(r["first_call_s"]) > 0
        # Tile selection is read for the Triton kernels only (nan where they select none).
        select = float(r["select_s"])
        assert (math.isnan(select) or select >= 0) if r["provider"] == "triton" else math.isnan(select), r
    triton_saved = [float(r["saved_bytes_per_token"]) for r in rows
                    if r["provider"] == "triton" and r["mode"] == "fwd+bwd" and r["op"] == "bottleneck_adapter"]
    assert triton_saved and triton_saved[0] <= 16 * 4 + 8  # fp32 smoke, r = 16: z + (mean, rstd)
    assert "smoke mode" in stdout


def test_bench_ops_plan_order(capsys):
    """--sizes runs the size classes in the order given, every op's rows of one class before any
    of the next; within a class the E-adapter targets (d = 1024, r in {64, 256}) come first. The
    plan builds no tensor, so it is checked here at the real sizes."""
    specs = bench_ops.plan(["roofline", "realistic"])
    assert [s.size for s in specs] == sorted((s.size for s in specs), key=["roofline", "realistic"].index)
    for op in bench_ops.OPS:
        mine = [s.size for s in specs if s.op == op]
        assert mine.index("realistic") == mine.count("roofline") > 0, op
    for size in ("roofline", "realistic"):
        cls = [s for s in specs if s.size == size]
        e = [s for s in cls if s.op == "bottleneck_adapter"]
        assert cls[:len(e)] == e and {(s.d, s.width) for s in e} == {(1024, 64), (1024, 256)}
        assert {s.layers for s in cls[len(e):]} == {13, 25}
    assert max(s.tokens for s in specs if s.op != "bottleneck_adapter") == bench_ops.LAYER_MAX_TOKENS
    assert [s.size for s in bench_ops.plan(["realistic", "roofline"])][0] == "realistic"
    assert [s.op for s in bench_ops.plan(["smoke"], ["weighted_layer_sum"])] == ["weighted_layer_sum"]
    assert bench_ops.main(["--list", "--sizes", "roofline,realistic"]) == 0
    assert capsys.readouterr().out.split() == [str(s) for s in specs]
    with pytest.raises(ValueError, match="unknown size class"):
        bench_ops.plan(["huge"])


def test_bench_ops_providers():
    """torch.compile only with --compile; the reference up to REFERENCE_MAX_TOKENS."""
    cpu = torch.device("cpu")
    assert "compile" not in bench_ops.provider_names(64, cpu, with_compile=False)
    assert bench_ops.provider_names(64, cpu, with_compile=True)[:3] == ["eager", "compile", "reference"]
    assert "reference" not in bench_ops.provider_names(bench_ops.REFERENCE_MAX_TOKENS + 1, cpu, False)


def test_selection_seconds_of_the_first_call(monkeypatch):
    """select_s: what the kernels' tuning module counts during a provider's first call, for the
    providers asked for only; nan where the module or its counter is missing."""
    import types

    spent = [0.0]
    tuning = types.ModuleType("elp_fast.kernels._tuning")
    tuning.selection_seconds = lambda: spent[0]
    monkeypatch.setitem(sys.modules, "elp_fast.kernels._tuning", tuning)

    def choose():
        spent[0] += 0.25
    out = harness.time_providers({"triton": choose, "eager": choose}, torch.device("cpu"), 1, True,
                                 select=("triton",))
    assert out["triton"].select_s == 0.25 and math.isnan(out["eager"].select_s)
    # The gate calls the kernels first: its choosing goes to the triton fwd+bwd row.
    assert [bench_ops.row_select_s("triton", m, 0.25, 1.0) for m in bench_ops.MODES] == [0.25, 0.25, 1.25]
    assert math.isnan(bench_ops.row_select_s("eager", "fwd+bwd", float("nan"), 1.0))
    monkeypatch.setitem(sys.modules, "elp_fast.kernels._tuning", types.ModuleType("elp_fast.kernels._tuning"))
    assert math.isnan(harness.selection_seconds())


def test_ops_pytest_benchmark_smoke(tmp_path):
    """`pytest benchmarks --benchmark-only` (benchmarks/test_ops_bench.py): bench_ops' cases,
    providers and gate under pytest-benchmark; the JSON is self-describing."""
    pytest.importorskip("triton")
    pytest.importorskip("pytest_benchmark")
    out = tmp_path / "ops.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "--benchmark-only", f"--benchmark-json={out}",
                           "--bench-compile", "-q", "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "TRITON_INTERPRET": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    ops = {"bottleneck_adapter", "layer_aggregate", "weighted_layer_sum"}
    providers = {"eager", "compile", "reference", "triton"} | ({"native"} if _native.available() is None else set())
    benches = data["benchmarks"]
    assert {(b["extra_info"]["op"], b["extra_info"]["provider"], b["extra_info"]["mode"]) for b in benches} == {
        (o, p, m) for o in ops for p in providers for m in ("fwd", "bwd", "fwd+bwd")}
    for b in benches:
        info = b["extra_info"]
        assert info["gate"] == "ok" and info["dtype"] == "float32" and info["size"] == "smoke", b
        assert info["tokens"] == 64 and info["d"] == 64 and info["layers"] >= 1 and info["bytes"] > 0
        assert info["gbps"] > 0 and info["first_call_s"] > 0 and b["stats"]["median"] > 0
        assert info["select_s"] is None or info["provider"] == "triton"
        assert b["group"].startswith(f"{info['op']} {info['mode']} N=64")
        assert (b["options"]["max_time"], b["options"]["min_rounds"]) == (0.01, 2)  # the smoke defaults
    assert data["machine_info"]["elp_fast"]["torch"] == torch.__version__


@pytest.mark.skipif(_native.available() is not None, reason="needs the native extension")
def test_bench_cpu_smoke(tmp_path):
    stdout, rows = _script("bench_cpu.py", tmp_path, "--smoke")
    assert {(r["op"], r["provider"], r["mode"], r["dtype"]) for r in rows} == {
        (o, p, m, d) for o in ("bottleneck_adapter", "layer_aggregate", "weighted_layer_sum")
        for p in ("reference", "native", "eager", "compile") for m in ("fwd", "bwd", "fwd+bwd") for d in ("float32", "bfloat16")}
    assert all(float(r["speedup_vs_reference"]) > 0 and float(r["pct_of_floor"]) > 0 for r in rows)
    assert all(r["gate"] == "ok" for r in rows if r["provider"] == "native")
    # The fused E-adapter keeps z and the LayerNorm statistics, not the d-wide activations the
    # reference keeps (smoke: fp32, d = 48, r = 16, with the layer's post-LN).
    saved = {r["provider"]: float(r["saved_bytes_per_token"]) for r in rows
             if r["op"] == "bottleneck_adapter" and r["mode"] == "fwd+bwd" and r["dtype"] == "float32"}
    assert saved["native"] < saved["reference"]
    assert "native/compile fwd+bwd" in stdout


def test_saved_bytes_smoke(tmp_path):
    """Per-token saved bytes of every provider; the Triton E-adapter keeps exactly z and the
    LayerNorm statistics (2r + 8 bytes in bf16), within the budget of docs/performance.md."""
    pytest.importorskip("triton")
    _, rows = _script("saved_bytes.py", tmp_path, "--smoke", interpret=True)
    pre_ln = {r["provider"]: float(r["saved_bytes_per_token"]) for r in rows
              if r["op"] == "bottleneck_adapter" and r["variant"] == "residual"}
    assert pre_ln["triton"] == 2 * 16 + 8
    assert pre_ln["triton"] < pre_ln["eager"] < pre_ln["reference"]
    assert "native" not in pre_ln or pre_ln["native"] < pre_ln["eager"]
    assert report.kind_of(list(rows[0])) == "saved"


def test_bench_engine_smoke(tmp_path):
    pytest.importorskip("deepspeed")
    stdout, rows = _script("bench_engine.py", tmp_path, "--smoke")
    assert [r["checkpointing"] for r in rows] == ["none", "all"]
    for r in rows:
        assert int(r["steps_timed"]) == 2 and float(r["step_ms_median"]) > 0 and float(r["peak_memory_mib"]) > 0
    assert "checkpointing all vs none" in stdout


def test_bench_engine_zero_stages(tmp_path):
    """ZeRO-2 against ZeRO-3 on a real-shaped backbone's tiny twin; ZeRO-3 partitions the
    parameters, and the trainable count must still be the whole model's."""
    pytest.importorskip("deepspeed")
    stdout, rows = _script("bench_engine.py", tmp_path, "--smoke", "--backbone", "tiny-wav2vec2", "--zero-stages", "2,3",
                           "--checkpointing", "all")
    assert [r["zero_stage"] for r in rows] == ["2", "3"]
    assert rows[0]["trainable_parameters"] == rows[1]["trainable_parameters"] and int(rows[0]["trainable_parameters"]) > 0
    assert rows[0]["loss_first"] == rows[1]["loss_first"]
    assert "zero_stage 3 vs 2" in stdout


def test_bench_e2e_smoke(tmp_path):
    pytest.importorskip("peft")
    stdout, listed = _script("bench_e2e.py", tmp_path, "--smoke", interpret=True, timeout=900)
    rows = {(r["backbone"], r["variant"], r["checkpointing"]): r for r in listed}
    variants = ("elp-eager", "elp-reference", "elp-fused", "elp-compile", "weighted-sum", "full", "lora")
    assert set(rows) == {(b, v, c) for b in ("tiny-wavlm", "tiny-wav2vec2") for v in variants for c in ("none", "all")}
    for (backbone, variant, ck), r in rows.items():
        if backbone == "tiny-wavlm" and variant == "lora":
            # HF WavLM's attention reads q/k/v/out weights directly: PEFT's LoRA there gets no gradient.
            assert r["status"].startswith("not comparable"), r
            continue
        assert r["status"] == "ok", r
        assert float(r["step_ms"]) > 0 and float(r["speedup_vs_reference"]) > 0 and float(r["speedup_vs_eager"]) > 0
        assert abs(sum(float(r[f"pct_{c}"]) for c in step_profile.CATEGORIES) - 100) < 0.5
        if variant.startswith("elp"):  # the gate: same weights, same first loss
            ref = rows[(backbone, "elp-reference", ck)]
            assert abs(float(r["loss_first"]) - float(ref["loss_first"])) <= 2e-2 * max(1, abs(float(ref["loss_first"])))
            assert r["trainable_params"] == ref["trainable_params"]
    for b in ("tiny-wavlm", "tiny-wav2vec2"):
        elp, ws = rows[(b, "elp-fused", "none")], rows[(b, "weighted-sum", "none")]
        # The weighted sum runs the frozen backbone without autograd; ELP keeps activations.
        assert float(ws["saved_mib"]) < float(elp["saved_mib"])
        # Checkpointing keeps fewer activations; the fused E-adapter fewer than the reference.
        assert float(rows[(b, "elp-fused", "all")]["saved_mib"]) < float(elp["saved_mib"])
        assert float(elp["saved_mib"]) < float(rows[(b, "elp-reference", "none")]["saved_mib"])
        assert float(elp["saved_vs_eager"]) < 1
        assert float(elp["pct_adapters"]) > 0 and float(rows[(b, "full", "none")]["pct_adapters"]) == 0
        assert int(rows[(b, "full", "none")]["trainable_params"]) > int(ws["trainable_params"])
    assert "smoke mode" in stdout


def test_master_adamw_matches_fp32_adamw():
    """The end-to-end step's optimizer: bf16 working weights, fp32 masters stepped by AdamW."""
    import e2e_models

    torch.manual_seed(0)
    w16 = torch.nn.Parameter(torch.randn(64, 64).to(torch.bfloat16))
    w32 = torch.nn.Parameter(w16.detach().float())
    ref = torch.optim.AdamW([w32], lr=1e-2)
    opt = e2e_models.MasterAdamW([w16], lr=1e-2)
    start = w16.detach().clone()
    for _ in range(3):
        g = torch.randn(64, 64)
        w32.grad, w16.grad = g.clone(), g.to(torch.bfloat16)
        ref.step()
        opt.step()
    assert w16.grad is None and w16.dtype == torch.bfloat16 and not torch.equal(w16.detach(), start)
    assert torch.equal(opt.master[0].to(torch.bfloat16), w16.detach())  # the working copy is the rounded master
    assert (opt.master[0] - w32.detach()).abs().max() < 1e-3  # bf16 gradients, fp32 state


# --- profiler breakdown -------------------------------------------------------------------

class _Toy(torch.nn.Module):
    """A 'backbone' Linear, an attention block and a much larger adapter: the breakdown must
    put most of the time under adapters, in forward and backward."""

    class SelfAttention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = torch.nn.Linear(32, 32)

        def forward(self, x):
            q = self.q_proj(x)
            return torch.softmax(q @ q.transpose(-1, -2), -1) @ x

    def __init__(self):
        super().__init__()
        self.attention = self.SelfAttention()
        self.e_adapters = torch.nn.Sequential(torch.nn.Linear(32, 4096), torch.nn.Linear(4096, 32))
        self.classifier = torch.nn.Linear(32, 2)

    def forward(self, x):
        return self.classifier(self.e_adapters(self.attention(x))).sum()


def test_step_profile_categories():
    torch.manual_seed(0)
    model = _Toy()
    x = torch.randn(16, 64, 32)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step():
        model(x).backward()
        with step_profile.optimizer_scope():
            opt.step()
    step()
    out = step_profile.breakdown(step, model, torch.device("cpu"))
    assert abs(sum(out[c] for c in step_profile.CATEGORIES) - 100) < 1e-6
    assert report.CATEGORIES == step_profile.CATEGORIES
    # The adapter's GEMMs (forward and backward) dwarf the rest; a broken attribution of backward
    # work (to "other") or of scopes would not leave them the largest share.
    assert out["adapters"] == max(out[c] for c in step_profile.CATEGORIES) and out["adapters"] > 30, out
    assert out["attention"] > 0 and out["matmul"] > 0 and out["head"] > 0 and out["optimizer"] > 0, out
    assert step_profile.module_category("encoder.layers.0.attention", model.attention) == "attention"
    assert step_profile.module_category("encoder.layers.0.attention.q_proj", model.attention.q_proj) == "matmul"
    assert step_profile.module_category("e_adapters.3.down", torch.nn.Linear(1, 1)) == "adapters"
    assert step_profile.module_category("base_model.model.wavlm.encoder.layers.0.attention.k_proj.lora_A.default",
                                        torch.nn.Linear(1, 1)) == "adapters"


# --- targets, the generated results section, charts ------------------------------------------

def _op_row(**kw):
    row = dict(op="bottleneck_adapter", provider="triton", mode="fwd+bwd", tokens="262144", d="1024", width="64",
               layers="1", dtype="bfloat16", variant="residual", gpu="NVIDIA H100 80GB HBM3", date="2026-12-01",
               median_ms="1.0",
               speedup_vs_eager="3.5", speedup_vs_compile="2.5", pct_of_floor="75", saved_bytes_per_token="136")
    row.update(kw)
    return row


def test_target_verdicts():
    t_eager, t_compile, t_floor = targets.TARGETS[:3]
    rows = [_op_row(), _op_row(width="256", speedup_vs_eager="2.9")]
    v = targets.evaluate(t_eager, rows, "triton")
    assert (v.configurations, v.worst, v.best, v.met) == (2, 2.9, 3.5, False)  # the worst configuration decides
    assert targets.evaluate(t_compile, rows, "triton").met
    assert targets.evaluate(t_eager, rows, "native") is None
    assert targets.evaluate(t_floor, [_op_row(tokens="6392")], "triton") is None  # not a roofline size
    assert targets.evaluate(t_eager, [_op_row(gpu="cpu AMD EPYC")], "triton") is None  # GPU targets need a GPU
    saved = next(t for t in targets.TARGETS if t.what.startswith("saved-for-backward"))
    cpu = [_op_row(provider="native", gpu="cpu AMD EPYC", width="256", saved_bytes_per_token="520"),
           _op_row(provider="native", gpu="cpu AMD EPYC", width="256", saved_bytes_per_token="2568",
                   variant="residual+post_ln")]  # post-LN layers are outside the target
    v = targets.evaluate(saved, cpu, "native")
    assert v.configurations == 1 and v.worst == 1.0 and v.met
    assert not targets.evaluate(saved, [_op_row(width="64", saved_bytes_per_token="137")], "triton").met
    e2e = [t for t in targets.TARGETS if t.kind == "e2e"]
    row = dict(backbone="wavlm-large", variant="elp-fused", checkpointing="none", batch="8", seconds="16.0",
               speedup_vs_eager="2.4", peak_vs_eager="0.6", gpu="NVIDIA H200")
    assert [targets.evaluate(t, [row]).met for t in e2e] == [True, False]


def test_report_section(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    rows = [_op_row(), _op_row(provider="eager", speedup_vs_eager="1.0")]
    with (results / "nvidia-h100-2026-12-01.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    text = report.section(report.load(results))
    line = next(x for x in text.splitlines() if x.startswith("| E-adapter fused fwd+bwd"))
    assert "triton, 3.50 (3.50), 1" in line and "NVIDIA H100 80GB HBM3, 2026-12-01" in line and line.endswith("met |")
    assert "awaiting a GPU run" in text  # the targets this file does not measure
    assert "### Targets of section 2" in text and "README" not in text  # the section cites its own document
    doc = tmp_path / "performance.md"
    doc.write_text(f"intro\n{report.BEGIN}\nold\n{report.END}\nrest\n")
    assert report.main(["--results", str(results), "--doc", str(doc), "--check"]) == 1
    assert report.main(["--results", str(results), "--doc", str(doc)]) == 0
    assert report.main(["--results", str(results), "--doc", str(doc), "--check"]) == 0
    assert doc.read_text().startswith("intro\n") and doc.read_text().endswith("rest\n")
    doc.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no .* markers"):
        report.main(["--results", str(results), "--doc", str(doc)])


def test_performance_doc_section_matches_results():
    """The committed docs/performance.md says what the committed results say (run
    benchmarks/report.py); the README no longer holds the generated section."""
    assert report.DOC == ROOT / "docs" / "performance.md"
    assert report.main(["--check"]) == 0
    assert report.BEGIN not in (ROOT / "README.md").read_text()


def test_plot_committed_results(tmp_path):
    pytest.importorskip("matplotlib")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "plot.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pngs = sorted(tmp_path.glob("*.png"))
    assert any(p.name.endswith("-speedup.png") for p in pngs)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
