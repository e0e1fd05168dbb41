"""The documents say what is true: the README's Python runs, every relative link in README.md and
docs/*.md resolves (file and #anchor), the README stays short, and the documents cite their own
files.

Convention for README.md's ```python blocks: they run in order, in one namespace, in a temporary
working directory. The test provides:
- the checkpoint path README_CHECKPOINT ("/models/wavlm-base-plus"), replaced by a directory holding
  a tiny random WavLM saved with save_pretrained (the same files a downloaded checkpoint has);
- `batches`: two batches of (audio, mask, labels): float audio at 16 kHz (2, 16000), a 0/1 long
  mask (the second utterance padded), labels in 0..3.
A block may use no other name from outside.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import transformers

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
README_CHECKPOINT = "/models/wavlm-base-plus"
MAX_README_LINES = 150

TINY_WAVLM = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                  conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 4),
                  num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)

FENCE = re.compile(r"^(```+|~~~+)[^\n]*\n.*?^\1[ \t]*$", re.S | re.M)
PYTHON_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`+[^`\n]*`+")
LINK = re.compile(r"\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def python_blocks(text: str) -> list[str]:
    return [m.group(1) for m in PYTHON_BLOCK.finditer(text)]


def prose(text: str) -> str:
    """The markdown without fenced code blocks and inline code (where brackets are not links and
    `#` lines are not headings)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: links reduced to their text, lower case, everything but
    letters, digits, '_', '-' and spaces dropped, spaces turned into '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for m in HEADING.finditer(FENCE.sub("", path.read_text())):
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(path: Path) -> list[str]:
    """'target: why' for every relative link of a markdown file that does not resolve."""
    bad = []
    for target in LINK.findall(prose(path.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            bad.append(f"{target}: {dest} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: {dest.name} has no heading with the anchor #{anchor}")
    return bad


# --- (a) the README's Python runs -------------------------------------------------------------

@pytest.fixture
def checkpoint(tmp_path):
    """A tiny random WavLM checkpoint directory, as from_pretrained finds one on disk."""
    torch.manual_seed(0)
    model = transformers.WavLMModel(transformers.WavLMConfig(**TINY_WAVLM))
    path = tmp_path / "checkpoints" / "wavlm-base-plus"
    model.save_pretrained(path)
    return path


def _batches() -> list:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(2):
        audio = 0.1 * torch.randn(2, 16000, generator=g)
        mask = torch.ones(2, 16000, dtype=torch.long)
        mask[1, 12000:] = 0
        audio[1, 12000:] = 0.0
        out.append((audio, mask, torch.randint(0, 4, (2,), generator=g)))
    return out


def test_readme_python_blocks_run(tmp_path, checkpoint, monkeypatch, capsys):
    from safetensors.torch import load_file

    from elp_fast.models import ELPModel

    blocks = python_blocks(README.read_text())
    assert blocks, "README.md has no ```python block"
    code = "\n".join(blocks)
    assert f'"{README_CHECKPOINT}"' in code, f"the README's Python no longer loads {README_CHECKPOINT!r}"
    code = code.replace(f'"{README_CHECKPOINT}"', repr(str(checkpoint)))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    namespace = {"__name__": "readme", "batches": _batches()}
    exec(compile(code, str(README), "exec"), namespace)

    models = [v for v in namespace.values() if isinstance(v, ELPModel)]
    assert models, "the README's Python builds no ELP model"
    saved = sorted(work.rglob("adapter_model.safetensors"))
    assert saved, "the README's Python saves no adapters"
    tensors = load_file(str(saved[0]))
    # The model that was saved, and any model the saved adapters were loaded into, hold them exactly.
    holding = [m for m in models if set(m.adapter_state_dict()) == set(tensors)
               and all(torch.equal(t.cpu(), tensors[n]) for n, t in m.adapter_state_dict().items())]
    assert holding, "no ELP model in the README's namespace holds the adapters it saved"
    assert "trainable" in capsys.readouterr().out  # print_trainable_parameters() printed the report


# --- (b) relative links resolve ----------------------------------------------------------------

@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    bad = broken_links(path)
    assert not bad, "broken links:\n" + "\n".join(bad)


def test_docs_exist():
    names = {p.name for p in DOCS}
    assert {"design.md", "engine.md", "performance.md", "testing.md", "tasks.md", "contributing.md"} <= names, names


def test_link_checker_catches_broken_links(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## 2.6 Backward cost `rules`\n\n```bash\n# not a heading\n```\n")
    doc = tmp_path / "doc.md"
    doc.write_text("[ok](other.md) [ok](other.md#26-backward-cost-rules) [web](https://example.org/x.md)\n"
                   "[gone](missing.md) [bad anchor](other.md#not-a-heading) [self](#nowhere)\n"
                   "`[not a link](missing.md)`\n\n```\n[in code](missing.md)\n```\n")
    bad = broken_links(doc)
    assert [b.split(":")[0] for b in bad] == ["missing.md", "other.md#not-a-heading", "#nowhere"], bad


def test_slugs_follow_github(tmp_path):
    assert slug("3. Layout") == "3-layout"
    assert slug("2.6 Backward cost rules (what the forward exploits)") == "26-backward-cost-rules-what-the-forward-exploits"
    assert slug("The native extension (`elp_fast._C`, `csrc/`)") == "the-native-extension-elp_fast_c-csrc"
    path = tmp_path / "probe.md"
    path.write_text("# A\n## Results\n## Results\n")
    assert anchors(path) == {"a", "results", "results-1"}  # repeated headings get -1, -2, ...


# --- (c) the README stays short; (d) the documents cite their own files --------------------------

def test_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; keep it at most {MAX_README_LINES}"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_documents_cite_docs_not_outside_files(path):
    text = path.read_text()
    # The design, performance and testing documents live in docs/ under lower-case names; the old
    # upper-case spec files outside the repository are never cited (names built here so that this
    # file does not cite them either).
    outside = ["../" + "shared", *(f"{n.upper()}.md" for n in ("design", "performance", "testing"))]
    for name in outside:
        assert name not in text, f"{path.name} refers to {name}; cite docs/ instead"


def test_no_file_of_the_product_cites_outside_specs():
    """Code, scripts, tests and documents cite docs/ (the spec files outside the repository, and
    the history of the product, are never named)."""
    outside = ["../" + "shared", *(f"{n.upper()}.md" for n in ("design", "performance", "testing")), "issue" + "'s"]
    suffixes = {".py", ".md", ".sh", ".yaml", ".yml", ".toml", ".cpp", ".h", ".cu", ".cuh", ".inc", ".in", ".txt"}
    files = [ROOT / name for name in ("README.md", "setup.py", "pyproject.toml", "MANIFEST.in", ".ci/run")]
    for folder in ("elp_fast", "kernels", "csrc", "benchmarks", "scripts", "tests", "examples", "docs"):
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in suffixes and "__pycache__" not in p.parts]
    found = [f"{p.relative_to(ROOT)}: {name}" for p in files if p.is_file()
             for name in outside if name in p.read_text(errors="replace")]
    assert found == []
