"""SD1.5's three parts, offline: shipped configs, the built-in models (tiny for tests, mini
trained here), single-file and diffusers checkpoints (sd15), the one weights reader
(weight_files), and the pixel form and objective of SD1.5's diffusion (diffusion)."""
from .sd15 import SD15, build_tiny, load_sd15, save_single_file
from .weight_files import read_state_dict

__all__ = ["SD15", "build_tiny", "load_sd15", "read_state_dict", "save_single_file"]
