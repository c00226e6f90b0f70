"""Word2Scene: remote-sensing scenes from one word with Stable Diffusion 1.5 and a concept
LoRA (Ren et al., ISPRS J. Photogramm. Remote Sens. 2024). This core knows nothing of
ComfyUI; the node pack in ../nodes is a thin layer over it."""

__version__ = "0.1.0"
