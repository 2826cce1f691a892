"""MaskDecoder: exact mask shapes for several backends' geometries, [0, 1] values, text conditioning, gradients."""

import json

import pytest
import torch

from conftest import TINY_WIDTHS, esc50_paths
from lmaczs.audio import load_audio
from lmaczs.checkpoint import load_decoder
from lmaczs.clap import load_backend
from lmaczs.decoder import CrossAttention, DecoderConfig, MaskDecoder, build_decoder, interpolation_matrix

SMALL = [8, 8, 16, 16]
GEOMETRIES = {
    # hidden (C, T_k, F_k) shallow → deep, and the STFT-domain mask (T, F)
    "aisfx": ([(64, 108, 48), (128, 54, 24), (256, 27, 12), (512, 27, 12)], (216, 1025)),
    "msclap": ([(256, 86, 8), (512, 43, 4), (1024, 21, 2), (2048, 21, 2)], (690, 513)),
    "htsat": ([(96, 256, 16), (192, 128, 8), (384, 64, 4), (768, 32, 2)], (1001, 513)),
    "mel-domain": ([(64, 108, 48), (128, 54, 24), (256, 27, 12), (512, 27, 12)], (216, 96)),
}


def _hidden(shapes, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, *s, generator=g).relu() for s in shapes]


def _attention_resolutions(decoder, text, hidden) -> list[tuple[int, int]]:
    seen = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append(tuple(args[0].shape[-2:])))
             for m in decoder.modules() if isinstance(m, CrossAttention)]
    try:
        decoder(text, hidden)
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_mask_shape_for_backend_geometries(name):
    shapes, mask_shape = GEOMETRIES[name]
    torch.manual_seed(0)
    dec = MaskDecoder(DecoderConfig(hidden_shapes=shapes, mask_shape=mask_shape, text_dim=16, widths=SMALL))
    text = torch.nn.functional.normalize(torch.randn(2, 16), dim=-1)
    hidden = _hidden(shapes)
    with torch.no_grad():
        mask = dec(text, hidden)
    assert mask.shape == (2, *mask_shape)
    assert torch.isfinite(mask).all() and mask.min() >= 0 and mask.max() <= 1
    resolutions = _attention_resolutions(dec, text, hidden)
    assert len(set(resolutions)) >= 2, f"cross-attention at {resolutions}"


def test_mask_shape_for_tiny_backend(tiny_backend):
    dec = build_decoder(tiny_backend, widths=TINY_WIDTHS)
    assert dec.config.mask_shape == tiny_backend.mask_shape() == (126, 129)
    wave = torch.randn(3, tiny_backend.num_samples, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        enc = tiny_backend.encode_spec(tiny_backend.analyze(wave)[0])
        text = tiny_backend.embed_text(["a dog barks", "rain", "a siren wails"])
        mask = dec(text, enc.hidden)
    assert mask.shape == (3, *tiny_backend.mask_shape())
    assert mask.min() >= 0 and mask.max() <= 1
    assert len(set(_attention_resolutions(dec, text, enc.hidden))) >= 2


def test_config_json_round_trip(tiny_backend):
    cfg = build_decoder(tiny_backend, widths=TINY_WIDTHS).config
    again = DecoderConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert MaskDecoder(again).state_dict().keys() == MaskDecoder(cfg).state_dict().keys()


def test_decoder_rejects_wrong_number_of_hidden_levels():
    with pytest.raises(ValueError):
        MaskDecoder(DecoderConfig(hidden_shapes=[(8, 16, 16)] * 3, mask_shape=(32, 33), text_dim=8))


def test_mask_depends_on_the_text(tiny_run):
    """With the trained tiny decoder, one real clip, two different prompts give two different masks."""
    decoder, meta = load_decoder(tiny_run.path)
    backend = load_backend(meta["backend"]["spec"])
    wave = backend.fit_window(load_audio(esc50_paths(1)[0], backend.sample_rate))[None]
    with torch.no_grad():
        hidden = backend.encode_spec(backend.analyze(wave / wave.abs().max())[0]).hidden
        text = backend.embed_text(["a dog barks", "the sound of rain"])
        masks = decoder(text, [h.expand(2, -1, -1, -1) for h in hidden])
        again = decoder(text[:1], hidden)
    torch.testing.assert_close(again[0], masks[0])  # deterministic, batch-independent
    assert (masks[0] - masks[1]).abs().max() > 1e-3


def test_gradients_reach_every_parameter(tiny_backend):
    """Every parameter gets a gradient, and after one step (the attention outputs start at zero, so text
    enters only once they move) every parameter's gradient is non-zero, the text projection's included."""
    torch.manual_seed(0)
    dec = build_decoder(tiny_backend, widths=TINY_WIDTHS)
    wave = torch.randn(2, tiny_backend.num_samples, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hidden = tiny_backend.encode_spec(tiny_backend.analyze(wave)[0]).hidden
    text = tiny_backend.embed_text(["a dog barks", "rain"])
    target = torch.rand(2, *tiny_backend.mask_shape(), generator=torch.Generator().manual_seed(2))
    opt = torch.optim.SGD(dec.parameters(), lr=0.5)
    for step in range(2):
        opt.zero_grad()
        ((dec(text, hidden) - target) ** 2).mean().backward()
        missing = [n for n, p in dec.named_parameters() if p.grad is None]
        assert not missing, f"no gradient for {missing}"
        if step == 0:
            opt.step()
    zero = [n for n, p in dec.named_parameters() if p.grad.abs().max() == 0]
    assert not zero, f"zero gradient for {zero}"


def test_interpolation_matrix_is_linear_interpolation():
    m = interpolation_matrix(3, 5)
    assert m.shape == (5, 3)
    torch.testing.assert_close(m.sum(1), torch.ones(5))
    torch.testing.assert_close(m @ torch.tensor([0.0, 1.0, 4.0]), torch.tensor([0.0, 0.5, 1.0, 2.5, 4.0]))
