"""data2vec-audio: the wav2vec 2.0 post-LN encoder layout with a multi-layer positional
convolution (owned by the HF encoder, so nothing differs for the ELP forward)."""
from .wav2vec2 import Wav2Vec2Family


class Data2VecAudioFamily(Wav2Vec2Family):
    name = "data2vec-audio"
    model_types = ("data2vec-audio",)
