"""Triton kernels, installed as `elp_fast.kernels` (see setup.py).

One file per op, named like the op in `elp_fast/ops/` (bottleneck_adapter, layer_aggregate,
weighted_layer_sum), plus weight_grad.py (the row-split GEMMs for weight gradients) and
_common.py. The ops in `elp_fast.ops` import these lazily: importing this package imports Triton,
which `import elp_fast` never does. Set TRITON_INTERPRET=1 before the first import to run them on
CPU through Triton's interpreter (tests).
"""
