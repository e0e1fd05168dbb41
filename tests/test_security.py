"""No unsafe deserialisation anywhere in the package (checked over the source text)."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "elp_fast").rglob("*.py")) + sorted((ROOT / "kernels").rglob("*.py"))

PATTERNS = {
    "pickle load": re.compile(r"\b(c?pickle|dill|joblib)\.loads?\("),
    "remote code": re.compile(r"trust_remote_code\s*=\s*True"),
    "numpy pickle": re.compile(r"allow_pickle\s*=\s*True"),
}


def test_sources_found():
    assert len(SOURCES) > 10


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_unsafe_loading(path):
    text = path.read_text()
    for what, pattern in PATTERNS.items():
        assert not pattern.search(text), f"{path}: {what}"
    for call in re.finditer(r"torch\.load\(([^)]*)\)", text):
        assert "weights_only=True" in call.group(1), f"{path}: torch.load without weights_only=True"


def test_scanner_catches_offences(tmp_path):
    bad = "import pickle\npickle.load(f)\ntorch.load(p)\nfrom_pretrained(x, trust_remote_code=True)\n"
    assert PATTERNS["pickle load"].search(bad) and PATTERNS["remote code"].search(bad)
    assert "weights_only=True" not in re.search(r"torch\.load\(([^)]*)\)", bad).group(1)
