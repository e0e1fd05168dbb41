"""ELPModel: a frozen HF speech encoder plus E-, L- and P-adapters, with its own forward.

The model holds the HF modules (feature encoder, projection, positional convolution, every
layer's attention, feed-forward and norms) and composes them; transformers classes are never
patched. The only family-specific step, the attention call, lives in the per-family files.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.utils import ModelOutput

from ..config import PARAMETER_GROUPS, ELPConfig, ELPConfigError, resolve_layers
from ..validation import parse_layer_spec, resolve_layer_spec
from ..modules import EAdapter, LAdapterBank, LayerSum, PAdapter
from . import heads
from .inputs import check_input_values, check_attention_mask
from .registry import Resolved


@dataclass
class ELPOutput(ModelOutput):
    """last_hidden_state is H (B, T, l_dim), or the encoder output when no L-adapters run.
    attention_mask is the frame mask (B, T) of real frames (None when no mask was given).
    hidden_states, on request, are X^0..X^L without pseudo frames."""

    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    last_hidden_state: Optional[torch.Tensor] = None
    attention_mask: Optional[torch.Tensor] = None
    hidden_states: Optional[tuple] = None


class ELPModel(nn.Module):
    def __init__(self, model: nn.Module, config: ELPConfig, resolved: Resolved,
                 task_head: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.config = config
        self.model = model  # the user's HF model (base or head model), frozen below
        self.family = resolved.family
        self.head_kind = resolved.head_kind
        self.stable_layer_norm = resolved.stable_layer_norm
        self._base_name = "" if resolved.base is model else model.base_model_prefix
        self._adapters_enabled = True
        self._checkpointed: frozenset = frozenset()  # encoder layers recomputed in backward

        hf = self.backbone.config
        num_layers, dim, feat_dim = hf.num_hidden_layers, hf.hidden_size, hf.conv_dim[-1]
        self.e_layer_ids = resolve_layers("e_layers", config.e_layers, num_layers)
        self.a_layer_ids = resolve_layers("a_layers", config.a_layers, num_layers)
        self.l_layer_ids = resolve_layers("l_layers", config.l_layers, num_layers)
        # The hidden states the L path reads, as indices into [X^0, X^1, ..., X^L].
        self.l_taps = ([0] if config.l_input else []) + [i + 1 for i in self.l_layer_ids]
        top_tap = max(self.l_taps, default=0) - 1  # the highest encoder layer the L path reads (-1: none)
        for name, ids in (("e_layers", self.e_layer_ids), ("a_layers", self.a_layer_ids)):
            if self.l_taps and ids and max(ids) > top_tap:
                raise ELPConfigError(
                    f"ELPConfig.{name}: got {getattr(config, name)!r}, which puts an {'E' if name[0] == 'e' else 'attention'}-adapter in layer "
                    f"{max(ids)} above the highest L-adapter tap {top_tap} (l_layers); it "
                    f"would never receive a gradient. Expected {name} within the tapped range")

        ref = next(model.parameters())
        kw = dict(device=ref.device, dtype=ref.dtype)
        def bottlenecks(ids: list) -> nn.ModuleDict:
            return nn.ModuleDict({str(i): EAdapter(dim, config.e_bottleneck, activation=config.e_act, eps=config.eps,
                                                   init_std=config.init_std, **kw) for i in ids})

        self.e_adapters = bottlenecks(self.e_layer_ids)
        self.a_adapters = bottlenecks(self.a_layer_ids)  # after attention: the conventional-adapter baseline
        self.l_adapters: Optional[nn.Module] = None
        if self.l_taps and config.l_mode == "identity":
            self.l_adapters = LayerSum(len(self.l_taps), **kw)
        elif self.l_taps:
            self.l_adapters = LAdapterBank(len(self.l_taps), dim, config.l_dim, activation=config.l_act,
                                           eps=config.eps, init_std=config.init_std, **kw)
        self.p_adapter = (PAdapter(config.p_len, feat_dim, mode=config.p_mode,
                                   bottleneck=config.p_bottleneck, activation=config.activation,
                                   init_std=config.init_std, frame_init_std=config.p_init_std, **kw)
                          if config.p_len > 0 else None)
        self.output_dim = config.l_dim if isinstance(self.l_adapters, LAdapterBank) else dim
        # Replaced head input layer, kept (frozen) so disable_adapters() reproduces the original.
        self.original_head_input: Optional[nn.Linear] = heads.adapt_head(model, self.head_kind, self.output_dim)
        self.task_head = heads.check_task_head(task_head, self.head_kind, self.output_dim, type(model).__name__)
        if self.task_head is not None:
            self.task_head.to(**kw)
        self._mark_trainable()

    # -- structure -----------------------------------------------------------------------

    @property
    def backbone(self) -> nn.Module:
        return getattr(self.model, self._base_name) if self._base_name else self.model

    @property
    def num_layers(self) -> int:
        return len(self.backbone.encoder.layers)

    def _layer_norm_params(self) -> Iterator[tuple[str, nn.Parameter]]:
        prefix = f"model.{self._base_name}." if self._base_name else "model."
        for i, layer in enumerate(self.backbone.encoder.layers):
            for norm in ("layer_norm", "final_layer_norm"):
                for pname, p in getattr(layer, norm).named_parameters():
                    yield f"{prefix}encoder.layers.{i}.{norm}.{pname}", p

    def _head_params(self) -> Iterator[tuple[str, nn.Parameter]]:
        for mname in heads.HEAD_MODULES.get(self.head_kind, ()):
            for pname, p in getattr(self.model, mname).named_parameters():
                yield f"model.{mname}.{pname}", p

    def _mark_trainable(self) -> None:
        for p in self.model.parameters():
            p.requires_grad_(False)
        if self.original_head_input is not None:
            self.original_head_input.requires_grad_(False)
        if self.config.train_encoder:
            for _, p in self._encoder_params():
                p.requires_grad_(True)
        if self.config.train_layer_norms:
            for _, p in self._layer_norm_params():
                p.requires_grad_(True)
        if self.config.train_head:
            for _, p in self._head_params():
                p.requires_grad_(True)
            if self.task_head is not None:
                self.task_head.requires_grad_(True)
        for module in (self.e_adapters, self.a_adapters, self.l_adapters, self.p_adapter):
            if module is not None:
                module.requires_grad_(True)

    def _encoder_params(self) -> Iterator[tuple[str, nn.Parameter]]:
        """What full fine-tuning trains: the encoder layers (the published 85.1 M for WavLM
        Base+); the CNN, feature projection and positional convolution stay frozen."""
        prefix = f"model.{self._base_name}." if self._base_name else "model."
        for name, p in self.backbone.encoder.layers.named_parameters():
            yield f"{prefix}encoder.layers.{name}", p

    def _backbone_groups(self) -> dict:
        groups = {n: "encoder" for n, _ in self._encoder_params()} if self.config.train_encoder else {}
        groups.update({n: "layer_norms" for n, _ in self._layer_norm_params()})
        groups.update({n: "head" for n, _ in self._head_params()})
        return groups

    def external_parameters(self) -> list[tuple[nn.Module, nn.Parameter]]:
        """(module, parameter) pairs in which the module's forward reads a parameter that lives
        outside it. ZeRO-3 gathers a module's own parameters when its forward runs and must be
        told about these (the engine registers them)."""
        pairs = []
        bb = self.backbone
        if not self.stable_layer_norm:  # post-LN E-adapters apply their layer's final LayerNorm
            for i, adapter in self.e_adapters.items():
                pairs += [(adapter, p) for p in bb.encoder.layers[int(i)].final_layer_norm.parameters()]
        for owner, attr in ((bb, "masked_spec_embed"), (self.model, "layer_weights")):
            p = getattr(owner, attr, None)  # SpecAugment's mask embedding; HF's layer-sum weights
            if isinstance(p, nn.Parameter):
                pairs.append((self, p))
        return pairs

    def parameter_group(self, name: str, _backbone: Optional[dict] = None) -> str:
        """The group (config.PARAMETER_GROUPS) a parameter, by its name in this module, belongs
        to: its learning-rate group and its line in the parameter report. Attention adapters
        count as e_adapters (the same bottleneck, and the same learning rate); a frozen backbone
        parameter is "backbone"."""
        for prefix, group in (("e_adapters.", "e_adapters"), ("a_adapters.", "e_adapters"),
                              ("l_adapters.layer_logits", "layer_weights"),
                              ("l_adapters.", "l_adapters"), ("p_adapter.", "p_adapter"), ("task_head.", "head")):
            if name.startswith(prefix):
                return group
        return (_backbone if _backbone is not None else self._backbone_groups()).get(name, "backbone")

    def trainable_parameter_counts(self) -> dict:
        """Trainable parameters per group, plus 'trainable', 'trainable_no_head' and 'total'."""
        counts = dict.fromkeys(PARAMETER_GROUPS, 0)
        backbone_groups = self._backbone_groups()
        total = 0
        for name, p in self.named_parameters():
            n = getattr(p, "ds_numel", None) or p.numel()  # ZeRO-3 leaves an empty shard in p
            total += n
            if p.requires_grad:
                group = self.parameter_group(name, backbone_groups)
                counts[group] = counts.get(group, 0) + n
        counts["trainable"] = sum(counts.values())
        counts["trainable_no_head"] = counts["trainable"] - counts["head"]
        counts["total"] = total
        return counts

    def parameter_report(self) -> str:
        c = self.trainable_parameter_counts()
        total = c["total"]
        lines = [f"ELP trainable parameters ({type(self.model).__name__}, {self.family.name}, "
                 f"{'pre' if self.stable_layer_norm else 'post'}-LN, {self.num_layers} layers)"]
        for group in [g for g in c if g not in ("trainable", "trainable_no_head", "total")]:
            lines.append(f"  {group:<22}{c[group]:>14,}  {100 * c[group] / total:7.3f} %")
        lines.append(f"  {'trainable (no head)':<22}{c['trainable_no_head']:>14,}  "
                     f"{100 * c['trainable_no_head'] / total:7.3f} %")
        lines.append(f"  {'trainable':<22}{c['trainable']:>14,}  {100 * c['trainable'] / total:7.3f} %")
        lines.append(f"  {'all parameters':<22}{total:>14,}")
        return "\n".join(lines)

    def print_trainable_parameters(self) -> None:
        print(self.parameter_report())

    @contextlib.contextmanager
    def disable_adapters(self) -> Iterator[None]:
        """Within the block the model computes exactly what the original HF model computes."""
        previous = self._adapters_enabled
        self._adapters_enabled = False
        try:
            yield
        finally:
            self._adapters_enabled = previous

    @property
    def adapters_enabled(self) -> bool:
        return self._adapters_enabled

    def set_activation_checkpointing(self, layers: object = "all") -> list[int]:
        """Recompute these encoder layers in backward instead of keeping their activations
        ("all", "none" or 0-based indices); returns the sorted indices. Always non-reentrant
        (torch.utils.checkpoint with use_reentrant=False): the reentrant variant trains nothing
        inside a block whose inputs do not require grad (docs/design.md 5). Layers that need no
        backward are never checkpointed (there is nothing to keep)."""
        if layers is None or layers is False:
            layers = "none"
        elif layers is True:
            layers = "all"
        spec = parse_layer_spec("activation_checkpointing", layers, keywords=("all", "none"))
        ids = resolve_layer_spec("activation_checkpointing", spec, self.num_layers)
        self._checkpointed = frozenset(ids)
        return ids

    @property
    def checkpointed_layers(self) -> list[int]:
        return sorted(self._checkpointed)

    def first_backward_layer(self, enabled: Optional[bool] = None) -> int:
        """Index of the lowest encoder layer that needs a backward pass (docs/design.md 2.6); layers
        below it run without autograd. num_layers when none does (an L-only configuration),
        -1 when the pseudo frames train (everything from the encoder input needs backward)."""
        enabled = self._adapters_enabled if enabled is None else enabled
        if enabled and self.p_adapter is not None and any(p.requires_grad for p in self.p_adapter.parameters()):
            return -1
        for i, layer in enumerate(self.backbone.encoder.layers):
            adapters = [a[str(i)] for a in (self.e_adapters, self.a_adapters) if enabled and str(i) in a]
            if any(p.requires_grad for p in layer.parameters()) or any(
                    p.requires_grad for a in adapters for p in a.parameters()):
                return i
        return self.num_layers

    def save_adapters(self, directory) -> None:
        from ..checkpoint import save_adapters

        save_adapters(self, directory)

    def load_adapters(self, directory) -> None:
        from ..checkpoint import load_adapters

        load_adapters(self, directory)

    def adapter_state_dict(self) -> dict:
        """The trainable tensors (what an adapter checkpoint holds), by parameter name."""
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}

    # -- forward ---------------------------------------------------------------------------

    def forward(self, input_values: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                labels: Optional[torch.Tensor] = None, *, output_hidden_states: bool = False,
                sampling_rate: Optional[int] = None) -> ELPOutput:
        bb = self.backbone
        input_values = check_input_values(input_values, bb, sampling_rate)
        attention_mask = check_attention_mask(attention_mask, input_values)
        enabled = self._adapters_enabled
        first_backward = self.first_backward_layer(enabled) if torch.is_grad_enabled() else self.num_layers
        # Nothing below the first layer that trains needs autograd: an L-only configuration runs
        # the whole backbone without it (docs/design.md 2.6).
        # The CNN needs autograd only when its own weights train (never in ELP: pseudo frames join
        # after it). HF's feature encoder marks its input as requiring grad while its parameters
        # are not formally frozen, which would otherwise record and backpropagate the whole CNN.
        cnn_grad = torch.is_grad_enabled() and any(p.requires_grad for p in bb.feature_extractor.parameters())
        with torch.set_grad_enabled(cnn_grad):
            feats = bb.feature_extractor(input_values).transpose(1, 2)  # (B, T, c)
        frame_mask = None
        if attention_mask is not None:
            frame_mask = bb._get_feature_vector_attention_mask(feats.shape[1], attention_mask)
        if labels is not None:
            if self.task_head is not None:
                heads.check_task_labels(self.task_head, labels, feats.shape[0], enabled)
            else:
                heads.check_labels(self.model, self.head_kind, labels, frame_mask, feats.shape[:2])

        k, enc_mask = 0, frame_mask
        if enabled and self.p_adapter is not None:
            pseudo = self.p_adapter(feats, frame_mask)
            k = pseudo.shape[1]
            feats = torch.cat([pseudo, feats], dim=1)
            if frame_mask is not None:
                enc_mask = torch.cat([frame_mask.new_ones(frame_mask.shape[0], k), frame_mask], dim=1)

        with torch.set_grad_enabled(torch.is_grad_enabled() and first_backward < 0):
            hidden = bb.feature_projection(feats)
            if isinstance(hidden, tuple):  # wav2vec2/WavLM also return the normalised features
                hidden = hidden[0]
            hidden = bb._mask_hidden_states(hidden, attention_mask=enc_mask)  # SpecAugment when training
        states = self._encode(hidden, enc_mask, enabled, output_hidden_states, first_backward)

        def real(t: torch.Tensor) -> torch.Tensor:
            return t[:, k:] if k else t

        if enabled and self.l_adapters is not None:
            H = self.l_adapters([real(states[i]) for i in self.l_taps])
        elif heads.uses_hf_layer_sum(self.model, self.head_kind):  # adapters disabled
            H = real(heads.hf_layer_sum(self.model, states))
        else:
            last = states[-1]
            H = real(bb.encoder.layer_norm(last) if self.stable_layer_norm else last)
        all_states = tuple(real(s) for s in states) if output_hidden_states else None

        logits = loss = None
        if self.head_kind is not None:
            logits, loss = heads.head_forward(self, H, frame_mask, labels, enabled)
        elif self.task_head is not None and enabled:  # its input is H: nothing to feed it without adapters
            logits, loss = self.task_head(H, frame_mask, labels)
        return ELPOutput(loss=loss, logits=logits, last_hidden_state=H, attention_mask=frame_mask,
                         hidden_states=all_states)

    def _encode(self, hidden: torch.Tensor, mask: Optional[torch.Tensor], enabled: bool,
                all_layers: bool, first_backward: int) -> list:
        """Run the encoder; returns [X^0, X^1, ...] up to the last layer that is needed.
        Layers below `first_backward` run without autograd."""
        enc = self.backbone.encoder
        grad = torch.is_grad_enabled()
        with torch.set_grad_enabled(grad and first_backward < 0):
            if mask is not None:
                hidden = hidden.masked_fill(~mask.unsqueeze(-1), 0.0)  # padded frames are zero, as in HF
            hidden = hidden + enc.pos_conv_embed(hidden)
            if not self.stable_layer_norm:
                hidden = enc.layer_norm(hidden)
            hidden = enc.dropout(hidden)
            attn_mask = self.family.prepare_attention_mask(enc, hidden, mask)

        # Layers above the highest L tap cannot influence H: they are not run.
        n_run = self.num_layers
        if enabled and self.l_adapters is not None and not all_layers:
            n_run = max(self.l_taps)
        drop = self._layerdrop_skips(n_run) if enabled else set()
        states, carry = [hidden], None
        for i in range(n_run):
            if i in drop:  # LayerDrop: the layer passes its input on
                states.append(hidden)
                continue
            if not grad or i < first_backward:
                with torch.no_grad():
                    hidden, carry = self._layer(i, enc.layers[i], hidden, attn_mask, carry, enabled)
            elif i in self._checkpointed:
                # Dropout masks are replayed in the recomputation (preserve_rng_state defaults on).
                hidden, carry = checkpoint(self._layer, i, enc.layers[i], hidden, attn_mask, carry, enabled,
                                           use_reentrant=False)
            else:
                hidden, carry = self._layer(i, enc.layers[i], hidden, attn_mask, carry, enabled)
            states.append(hidden)
        return states

    def _layerdrop_skips(self, n_run: int) -> set:
        """Layers this training forward skips (ELPConfig.layerdrop): each with probability
        config.layerdrop of the backbone, drawn as HF draws it (from the family's
        first_droppable_layer: WavLM never skips layer 0). Under ZeRO-3 no layer is skipped: every
        process must gather every layer's parameters in the same order."""
        p = float(getattr(self.backbone.config, "layerdrop", 0.0) or 0.0)
        if not (self.config.layerdrop and self.training and p > 0):
            return set()
        if any(hasattr(q, "ds_id") for q in self.backbone.encoder.layers[0].parameters()):
            return set()
        first = self.family.first_droppable_layer
        return {i for i in range(n_run) if i >= first and float(torch.rand([])) < p}

    def _layer(self, i: int, layer: nn.Module, hidden: torch.Tensor, attn_mask, carry, enabled: bool):
        adapter = self.e_adapters[str(i)] if enabled and str(i) in self.e_adapters else None
        a_adapter = self.a_adapters[str(i)] if enabled and str(i) in self.a_adapters else None
        residual = hidden
        h = layer.layer_norm(hidden) if self.stable_layer_norm else hidden
        h, carry = self.family.attention(layer, h, attn_mask, carry, i)
        if a_adapter is not None:  # conventional adapters: the bottleneck on the attention output too
            h = a_adapter(layer.dropout(h), residual=residual)
        else:
            h = residual + layer.dropout(h)
        if self.stable_layer_norm:  # out = A + E(FFN(LN_final(A)))
            ff = layer.feed_forward(layer.final_layer_norm(h))
            out = adapter(ff, residual=h) if adapter is not None else h + ff
            if getattr(layer, "adapter_layer", None) is not None:  # MMS attention adapters
                out = out + layer.adapter_layer(out)
        else:  # out = LN_final(A + E(FFN(A)))
            a = layer.layer_norm(h)
            ff = layer.feed_forward(a)
            if adapter is not None:
                out = adapter(ff, residual=a, post_ln=layer.final_layer_norm)
            else:
                out = layer.final_layer_norm(a + ff)
        return out, carry
