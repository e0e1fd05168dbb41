"""Triton kernels, installed as `elp_fast.kernels` (see setup.py).

Empty until the fused-kernel issue: the reference backend in `elp_fast.ops` is the only
implementation so far. Importing this package must stay free of side effects.
"""
