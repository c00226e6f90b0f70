"""SD1.5's three parts, offline: shipped configs, the built-in models (tiny for tests, mini
trained here), single-file and diffusers checkpoints, and the one weights reader."""
from .sd15 import SD15, build_tiny, load_sd15, read_state_dict, save_single_file

__all__ = ["SD15", "build_tiny", "load_sd15", "read_state_dict", "save_single_file"]
