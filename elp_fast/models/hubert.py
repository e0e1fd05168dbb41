"""HuBERT: the wav2vec 2.0 encoder layout; its feature projection returns a tensor, not a tuple
(handled in the ELP forward), and may skip the projection LayerNorm (feat_proj_layer_norm)."""
from .wav2vec2 import Wav2Vec2Family


class HubertFamily(Wav2Vec2Family):
    name = "hubert"
    model_types = ("hubert",)
