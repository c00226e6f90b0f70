"""Image helpers (imagery.py): the square's symmetries, one transform for images and latents."""
import numpy as np
import torch

from word2scene.imagery import dihedral


def test_dihedral_gives_the_eight_symmetries_and_turns_latents_as_images():
    image = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    turned = [dihedral(image, k) for k in range(8)]
    assert len({t.tobytes() for t in turned}) == 8 and all(t.flags["C_CONTIGUOUS"] for t in turned)
    assert np.array_equal(turned[1], np.rot90(image)) and np.array_equal(turned[4], image[:, ::-1])
    latents = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None]  # 1 x C x H x W
    for k in range(8):
        as_latent = dihedral(latents, k, axes=(-2, -1))
        assert isinstance(as_latent, torch.Tensor)
        assert torch.equal(as_latent[0].permute(1, 2, 0), torch.from_numpy(turned[k].astype(np.float32))), k
