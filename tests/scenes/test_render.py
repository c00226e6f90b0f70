"""Pictures for people (scenes/render.py): the training's loss curve."""
import numpy as np

from word2scene.scenes.render import loss_curve


def test_loss_curve_draws_something():
    image = np.asarray(loss_curve([1.0, 0.8, 0.9, 0.5, 0.4]))
    assert image.shape == (256, 512, 3) and (image[..., 2] > 100).sum() > 100 and (image < 250).any()


def test_loss_curve_takes_a_size():
    assert loss_curve([1.0, 0.5], (300, 120)).size == (300, 120)
    assert np.asarray(loss_curve([], (200, 100))).shape == (100, 200, 3)  # no steps yet: the empty frame
