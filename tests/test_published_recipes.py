"""The task recipes against the published E/L-adapter code (Otake et al., ICASSP 2023), re-derived
here from its behaviour: the intent head, the initialisation of a resized HF head layer,
LayerDrop in the baselines without L-adapters, what trains in L-only, the CTC head's settings
and the ASV cohort. (The ASR schedule and the weighted sum's L + 1 weights are checked in
test_recipes.py and test_methods.py; docs/tasks.md lists every difference that remains.)"""
import pytest
import torch
from torch import nn

import elp_fast
from conftest import audio_batch, tiny_model
from elp_fast.tasks.methods import METHODS
from elp_fast.tasks.recipe import load_recipe
from elp_fast.tasks.sic import MultiSlotHead


class PublishedIntentHead(nn.Module):
    """The published SIC head: a per-frame projector, the masked mean over real frames, one
    classifier over all slot values, its logits split per slot; the loss sums the slots' CE."""

    def __init__(self, in_dim, slot_sizes, proj=256):
        super().__init__()
        self.sizes = slot_sizes
        self.projector = nn.Linear(in_dim, proj)
        self.classifier = nn.Linear(proj, sum(slot_sizes))

    def forward(self, h, mask):
        x = self.projector(h)
        x = x.masked_fill(~mask.bool().unsqueeze(-1), 0.0)
        pooled = x.sum(1) / mask.sum(1, keepdim=True)
        return list(self.classifier(pooled).split(self.sizes, dim=-1))


def test_intent_head_computes_the_published_head():
    assert load_recipe("sic")["head"] == {"hidden": 256, "activation": "none"}
    torch.manual_seed(0)
    ours = MultiSlotHead(32, [6, 14, 4], hidden=256)
    theirs = PublishedIntentHead(32, [6, 14, 4])
    with torch.no_grad():
        theirs.projector.load_state_dict(ours.hidden.state_dict())
        theirs.classifier.weight.copy_(torch.cat([s.weight for s in ours.slots]))
        theirs.classifier.bias.copy_(torch.cat([s.bias for s in ours.slots]))
    h = torch.randn(3, 11, 32)
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 7:] = 0
    labels = torch.tensor([[0, 1, 2], [5, 13, 3], [2, 0, 0]])
    logits, loss = ours(h, mask, labels)
    want = theirs(h, mask)
    for a, b in zip(logits, want):  # the mean and the projection commute: equal up to fp32 rounding
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, sum(nn.functional.cross_entropy(w, labels[:, s]) for s, w in enumerate(want)))
    gelu = MultiSlotHead(32, [6, 14, 4], hidden=256, activation="gelu")
    gelu.load_state_dict(ours.state_dict())
    assert not torch.allclose(gelu(h, mask)[0][0], logits[0])  # the GELU variant is another function


@pytest.mark.parametrize("head", ["ForCTC", "ForSequenceClassification"])
def test_a_resized_head_layer_keeps_pytorch_default_initialisation(head):
    model, twin = tiny_model("wavlm-postln", head=head), tiny_model("wavlm-postln", head=head)
    name = "lm_head" if head == "ForCTC" else "projector"
    out_features = getattr(model, name).out_features
    torch.manual_seed(123)
    elp = elp_fast.wrap(model, l_dim=24, p_len=0, e_bottleneck=8)
    new = getattr(elp.model, name)
    assert new.in_features == 24
    torch.manual_seed(123)
    torch.testing.assert_close(getattr(elp_fast.wrap(twin, l_dim=24, p_len=0, e_bottleneck=8).model, name).weight,
                               new.weight)  # drawn from torch's generator: seeded runs repeat
    bound = 1 / 24 ** 0.5  # kaiming-uniform(a=sqrt(5)) of nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert new.weight.abs().max() <= bound and new.weight.abs().max() > 0.8 * bound
    assert new.bias.abs().max() <= bound and new.bias.abs().max() > 0  # not zeroed
    assert new.weight.shape == (out_features, 24)


def layer_runs(elp, x, mask):
    """How many encoder layers each training forward actually runs (forward hooks)."""
    calls = []
    hooks = [layer.feed_forward.register_forward_hook(lambda *a: calls.append(1)) for layer in
             elp.backbone.encoder.layers]
    elp(x, attention_mask=mask)
    for h in hooks:
        h.remove()
    return len(calls)


@pytest.mark.parametrize("method", ["e_only", "adapters", "full"])
def test_baselines_without_l_adapters_keep_the_backbones_layerdrop(method, backbone_key):
    x, mask = audio_batch()
    elp = elp_fast.wrap(tiny_model(backbone_key, layerdrop=0.5), **{"e_bottleneck": 8, **METHODS[method][1]})
    assert elp.config.layerdrop
    torch.manual_seed(0)
    runs = [layer_runs(elp.train(), x, mask) for _ in range(12)]
    n = elp.num_layers
    assert min(runs) < n and max(runs) <= n  # some layers skipped, never more than all run
    if elp.family.name == "wavlm":
        assert min(runs) >= 1  # layer 0 computes the position bias the others reuse: never skipped
    assert {layer_runs(elp.eval(), x, mask) for _ in range(3)} == {n}  # never at evaluation


@pytest.mark.parametrize("method", ["elp", "el", "l_only", "weighted_sum"])
def test_methods_with_l_adapters_never_drop_layers(method):
    x, mask = audio_batch()
    elp = elp_fast.wrap(tiny_model("wavlm-postln", layerdrop=0.9), **{"e_bottleneck": 8, "l_dim": 16,
                                                                     **METHODS[method][1]}).train()
    assert not elp.config.layerdrop
    assert {layer_runs(elp, x, mask) for _ in range(5)} == {elp.num_layers}


def test_l_only_trains_the_encoder_layer_norms_as_published():
    elp = elp_fast.wrap(tiny_model("wavlm-postln"), l_dim=16, **METHODS["l_only"][1])
    counts = elp.trainable_parameter_counts()
    assert counts["layer_norms"] == elp.num_layers * 2 * 2 * elp.backbone.config.hidden_size
    assert counts["e_adapters"] == counts["p_adapter"] == 0
    assert elp.first_backward_layer() == 0
    frozen = elp_fast.wrap(tiny_model("wavlm-postln"), l_dim=16, **{**METHODS["l_only"][1], "train_layer_norms": False})
    assert frozen.first_backward_layer() == frozen.num_layers  # the variant that runs without autograd


def test_ctc_head_settings_follow_the_published_code():
    from elp_fast.tasks.asr import build_head

    recipe = load_recipe("asr")
    head = build_head(recipe["head"], 16, {"vocab_size": 29})
    assert head.zero_infinity is False and head.p == recipe["head"]["dropout"]
    h = torch.randn(1, 3, 16)
    # three frames cannot carry five tokens: refused with a message, never a silent zero loss
    with pytest.raises(ValueError, match="5 target tokens but 3 frames"):
        head(h, torch.ones(1, 3, dtype=torch.long), torch.tensor([[1, 2, 3, 4, 5]]))


def test_asv_scores_are_s_normalised_against_random_training_utterances():
    from elp_fast.data.corpora import Utterance
    from elp_fast.tasks.asv import cohort

    head = load_recipe("asv")["head"]
    assert head["score_norm"] == "s_norm" and head["cohort_size"] == 10_000
    utts = [Utterance(f"u{i}", f"u{i}.wav", speaker=f"s{i % 7}") for i in range(50)]
    picked = cohort(utts, sorted({u.speaker for u in utts}), "s_norm", 20)
    assert len(picked) == len({u.id for u in picked}) == 20  # distinct, drawn from all training utterances
    assert picked == cohort(utts, sorted({u.speaker for u in utts}), "s_norm", 20)  # the same at every evaluation
    assert len(cohort(utts, [], "s_norm", 10_000)) == 50  # at most the whole training set
    per_speaker = cohort(utts, sorted({u.speaker for u in utts}), "as_norm", 100)
    assert [u.speaker for u in per_speaker] == sorted({u.speaker for u in utts})
