"""Heat maps, capture (scenes/capture.py): explicit cross-attention at SD1.5's attn2 sites, the
conditional rows only, on every layer's own grid."""
import pytest
import torch

from word2scene.errors import InputError
from word2scene.scenes.capture import AttentionCapture, DiffusersTracer, conditional_rows, cross_attention, layer_shape


def test_conditional_rows_for_cond_uncond_together_or_apart():
    assert conditional_rows([1, 0], 4).tolist() == [2, 3]
    assert conditional_rows([0, 1], 6).tolist() == [0, 1, 2]
    assert conditional_rows([0], 2).tolist() == [0, 1]
    assert conditional_rows([1], 2) is None


def test_cross_attention_matches_sdpa_and_captures_only_cond_rows():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(4, 16, 32, generator=g), torch.randn(4, 77, 32, generator=g), torch.randn(4, 77, 32, generator=g)
    capture = AttentionCapture((4, 4))
    out = cross_attention(q, k, v, 4, capture, "input_1", torch.tensor([2, 3]))
    ref = torch.nn.functional.scaled_dot_product_attention(q.view(4, 16, 4, 8).transpose(1, 2),
                                                           k.view(4, 77, 4, 8).transpose(1, 2),
                                                           v.view(4, 77, 4, 8).transpose(1, 2))
    torch.testing.assert_close(out, ref.transpose(1, 2).reshape(4, 16, 32), rtol=1e-4, atol=1e-5)
    assert capture.sums["input_1"].shape == (2, 77, 4, 4) and capture.counts["input_1"] == 4
    # each position's probabilities over the 77 columns sum to 1 per head: 4 heads -> 4
    torch.testing.assert_close(capture.sums["input_1"].sum(1), torch.full((2, 4, 4), 4.0))


def test_layer_shapes_for_any_multiple_of_8():
    assert layer_shape(9, 5, 45) == (9, 5) and layer_shape(9, 5, 15) == (5, 3) and layer_shape(9, 5, 2) == (2, 1)
    with pytest.raises(InputError, match="attn2 layout"):
        layer_shape(8, 8, 7)


def test_model_without_sd15_attn2_layout_is_refused():
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8,
                                attention_head_dim=2, norm_num_groups=4, layers_per_block=1, sample_size=8)
    with pytest.raises(InputError, match="SD1.5 has 16"):
        with DiffusersTracer(unet, (8, 8)):
            pass
