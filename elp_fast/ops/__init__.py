"""The adapter ops. Each file holds `<op>_ref` (pure PyTorch, the spec), the dispatching entry
point and its registrations with `elp_fast.backends`. Fused backends register beside it."""
from .bottleneck_adapter import bottleneck_adapter, bottleneck_adapter_ref
from .layer_aggregate import layer_aggregate, layer_aggregate_ref
from .weighted_layer_sum import weighted_layer_sum, weighted_layer_sum_ref

__all__ = [
    "bottleneck_adapter", "bottleneck_adapter_ref",
    "layer_aggregate", "layer_aggregate_ref",
    "weighted_layer_sum", "weighted_layer_sum_ref",
]
