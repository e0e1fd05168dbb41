"""What vulture reports as unused in elp_fast/ and kernels/ but is used from outside its reach,
each with the reason (tests/test_dead_code.py passes this file to vulture as a whitelist).
Names only; this file is never imported."""
# ruff: noqa
# fmt: off
_ = None

# Public API, used by library users and the docs, not by elp_fast itself.
__getattr__                    # elp_fast/__init__.py: PEP 562 lazy attributes (wrap, ops, ...)
_.set_cuda_preference          # backends: reorder native / triton on CUDA at run time
_.to_json; _.from_json         # ELPConfig serialisation
_.disable_adapters             # ELPModel: the original model's outputs inside the block
_.adapters_enabled             # ELPModel: whether adapters run now
_.checkpointed_layers          # ELPModel: the layers recomputed in backward
_.blank                        # CharVocab: the CTC blank id
last_hidden_state              # ELPOutput field (a ModelOutput dataclass)
session                        # Utterance field: the IEMOCAP session, for folds of your own

# Called by frameworks, not by name.
_.extra_repr                   # nn.Module.__repr__ calls it
_                              # ops/*.py: `@torch.library.register_fake/register_autograd` functions named `_`
TASK                           # tasks/*.py: the registered Task (register_task keeps it; modules expose it)

# Flags read by other libraries.
_._dynamo_marked_constant      # torch.compile reads it (what assume_constant_result sets)
_._hp_optimizer_states_linked  # DeepSpeed's optimizer reads it to re-link parameter fragments

# Tile selection hooks used from benchmarks/ and tests/ (outside vulture's reach).
_.selection_seconds            # kernels/_tuning.py: benchmarks report the time spent choosing tiles
_.forced                       # kernels/_tuning.py: tests and compile_check force each candidate
