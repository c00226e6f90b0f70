"""The samplers of the standalone path (scenes/sampling.py) on the tiny model."""
import pytest
import torch

from word2scene.errors import InputError
from word2scene.scenes.sampling import SAMPLERS, SamplingSettings, sample


def test_both_samplers_solve_the_same_ode_and_report_their_x0(tiny):
    def run(sampler, steps, seed=0):
        seen = []
        latents = sample(tiny, "gs, geographic scene, airport",
                         SamplingSettings(steps=steps, cfg=3.0, seed=seed, width=64, height=64, sampler=sampler),
                         on_step=lambda i, n, x, x0: seen.append(x0.clone()))
        return latents, seen

    ddim, _ = run("ddim", 60)
    dpm, x0s = run("dpmpp_2m", 60)
    other_seed, _ = run("dpmpp_2m", 60, seed=1)
    assert set(SAMPLERS) == {"ddim", "dpmpp_2m"} and len(x0s) == 60
    gap = (ddim - dpm).abs().mean()
    assert gap < 0.25 * (dpm - other_seed).abs().mean()  # the same image, not another seed's
    assert (x0s[-1] - dpm).abs().mean() < 0.1 * dpm.abs().mean()  # the last x0 is the result
    again, _ = run("dpmpp_2m", 60)
    assert torch.equal(again, dpm)
    with pytest.raises(InputError, match="sampler"):
        SamplingSettings(sampler="euler").check()
