"""elp_fast: ELP-adapter tuning for self-supervised speech encoders.

`import elp_fast` stays light: no Triton, no compiled extension, no CUDA initialisation, and
transformers is only imported when a model is wrapped.
"""
from .backends import BackendUnavailableError, use_backend
from .config import ELPConfig, ELPConfigError
from .version import __version__

_LAZY = {
    "wrap": "elp_fast.models",
    "ELPModel": "elp_fast.models",
    "ELPOutput": "elp_fast.models",
    "UnsupportedModelError": "elp_fast.models",
    "CheckpointError": "elp_fast.checkpoint",
    "ops": "elp_fast.ops",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        value = module if name == "ops" else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'elp_fast' has no attribute {name!r}")


__all__ = ["ELPConfig", "ELPConfigError", "BackendUnavailableError", "use_backend", "__version__",
           *_LAZY]
