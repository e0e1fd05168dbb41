"""nn.Modules owning the adapter parameters; the adapter maths goes through `elp_fast.ops`."""
from .e_adapter import EAdapter
from .l_adapter import LAdapterBank, LayerSum
from .p_adapter import PAdapter

__all__ = ["EAdapter", "LAdapterBank", "LayerSum", "PAdapter"]
