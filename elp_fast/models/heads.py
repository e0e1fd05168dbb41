"""The HF task heads kept by wrap(): *ForCTC (lm_head) and *ForSequenceClassification
(projector + classifier). Their input layer is resized to the ELP feature width when needed."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .inputs import checking_values

HEAD_MODULES = {"ctc": ("lm_head",), "sequence_classification": ("projector", "classifier")}
_INPUT_LAYER = {"ctc": "lm_head", "sequence_classification": "projector"}


def adapt_head(model: nn.Module, kind: Optional[str], width: int) -> Optional[nn.Linear]:
    """Give the head an input layer of `width` features; return the replaced layer (or None)."""
    if kind is None:
        return None
    name = _INPUT_LAYER[kind]
    old: nn.Linear = getattr(model, name)
    if old.in_features == width:
        return None
    # PyTorch's default initialisation, as the published E/L-adapter code leaves it (its models'
    # _init_weights touches the adapters only), not HF's N(0, initializer_range).
    new = nn.Linear(width, old.out_features, bias=old.bias is not None,
                    device=old.weight.device, dtype=old.weight.dtype)
    setattr(model, name, new)
    return old


def check_task_head(head: Optional[nn.Module], kind: Optional[str], width: int, model_name: str) -> Optional[nn.Module]:
    """A custom task head (elp_fast.tasks: SpeakerHead, MultiSlotHead, or any module with
    forward(h, frame_mask, labels) -> (output, loss), in_dim and describe()) on a bare encoder."""
    if head is None:
        return None
    if not isinstance(head, nn.Module) or not callable(getattr(head, "describe", None)):
        raise TypeError(f"wrap(): task_head must be an nn.Module with forward(h, frame_mask, labels) and "
                        f"describe(), got {type(head).__name__}")
    if kind is not None:
        raise ValueError(f"wrap(): task_head given, but {model_name} already has its HF {kind} head; wrap the bare "
                         "encoder (e.g. WavLMModel) to use a custom head")
    if getattr(head, "in_dim", None) != width:
        raise ValueError(f"wrap(): task_head.in_dim is {getattr(head, 'in_dim', None)}; expected {width}, the width "
                         "of H (l_dim, or the encoder width without L-adapters)")
    return head


def check_task_labels(head: nn.Module, labels: object, batch: int, enabled: bool) -> None:
    if not enabled:
        raise ValueError("labels: given inside disable_adapters(), where the custom task head (which reads the "
                         "L-adapters' output) does not run")
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels: got {getattr(labels, 'dtype', type(labels).__name__)}; expected an integer tensor")
    check = getattr(head, "check_labels", None)
    if check is not None and checking_values():
        check(labels, batch)


def check_labels(model: nn.Module, kind: Optional[str], labels: object,
                 frame_mask: Optional[torch.Tensor], frames_shape) -> None:
    if kind is None:
        raise ValueError("labels: given, but the wrapped model has no task head (wrap a *ForCTC or "
                         "*ForSequenceClassification model, or compute the loss on last_hidden_state)")
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels: got {getattr(labels, 'dtype', type(labels).__name__)}; expected an integer tensor")
    batch, frames = frames_shape
    if kind == "sequence_classification":
        n = model.config.num_labels
        if labels.shape != (batch,):
            raise ValueError(f"labels: got shape {tuple(labels.shape)}; expected ({batch},), one class per utterance")
        if checking_values() and bool(((labels < 0) | (labels >= n)).any()):
            raise ValueError(f"labels: got values {labels.tolist()}; expected class ids in 0..{n - 1}")
        return
    vocab = model.config.vocab_size
    if labels.dim() != 2 or labels.shape[0] != batch:
        raise ValueError(f"labels: got shape {tuple(labels.shape)}; expected ({batch}, max_target_length) "
                         "padded with -100")
    if not checking_values():
        return
    bad = (labels != -100) & ((labels < 0) | (labels >= vocab))
    if bool(bad.any()):
        raise ValueError(f"labels: got token ids {labels[bad].unique().tolist()}; expected ids in "
                         f"0..{vocab - 1} or -100 for padding")
    target_lengths = (labels >= 0).sum(-1)
    frame_counts = frame_mask.sum(-1) if frame_mask is not None else torch.full_like(target_lengths, frames)
    too_long = (target_lengths > frame_counts).nonzero().flatten().tolist()
    if too_long:
        raise ValueError(f"labels: CTC targets of utterances {too_long} have lengths "
                         f"{target_lengths[too_long].tolist()}, longer than their frame counts "
                         f"{frame_counts[too_long].tolist()}; expected target length <= frames")


def uses_hf_layer_sum(model: nn.Module, kind: Optional[str]) -> bool:
    """HF's own weighted layer sum (use_weighted_layer_sum); only used with adapters disabled,
    where the L-adapters' aggregation replaces it otherwise."""
    return kind == "sequence_classification" and bool(getattr(model.config, "use_weighted_layer_sum", False))


def hf_layer_sum(model: nn.Module, states: list) -> torch.Tensor:
    stacked = torch.stack(states, dim=1)  # same operations as transformers, for identical results
    norm_weights = F.softmax(model.layer_weights, dim=-1)
    return (stacked * norm_weights.view(-1, 1, 1)).sum(dim=1)


def head_forward(elp, H: torch.Tensor, frame_mask: Optional[torch.Tensor],
                 labels: Optional[torch.Tensor], enabled: bool):
    model = elp.model
    cfg = model.config
    first = getattr(model, _INPUT_LAYER[elp.head_kind])
    if not enabled and elp.original_head_input is not None:
        first = elp.original_head_input
    if elp.head_kind == "ctc":
        logits = first(model.dropout(H))
        return logits, (ctc_loss(logits, frame_mask, labels, cfg) if labels is not None else None)
    x = first(H)
    if frame_mask is None:
        pooled = x.mean(dim=1)
    else:
        x = x.masked_fill(~frame_mask.unsqueeze(-1), 0.0)
        pooled = x.sum(dim=1) / frame_mask.sum(dim=1).view(-1, 1)
    logits = model.classifier(pooled)
    loss = F.cross_entropy(logits.view(-1, cfg.num_labels), labels.view(-1)) if labels is not None else None
    return logits, loss


def ctc_loss(logits: torch.Tensor, frame_mask: Optional[torch.Tensor], labels: torch.Tensor, cfg) -> torch.Tensor:
    """CTC in fp32 whatever the model dtype (docs/design.md 5); blank = pad_token_id as in HF."""
    batch, frames = logits.shape[:2]
    input_lengths = (frame_mask.sum(-1) if frame_mask is not None
                     else torch.full((batch,), frames, dtype=torch.long, device=logits.device))
    keep = labels >= 0
    log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)
    with torch.backends.cudnn.flags(enabled=False):
        return F.ctc_loss(log_probs, labels.masked_select(keep), input_lengths, keep.sum(-1),
                          blank=cfg.pad_token_id, reduction=cfg.ctc_loss_reduction,
                          zero_infinity=cfg.ctc_zero_infinity)
