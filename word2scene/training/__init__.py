"""Training: the concept LoRA fine-tune (lora: its loop; config, data, adapters, objective and
outputs: its parts) and the Word2Scene-mini base model (base_model)."""
from .base_model import PretrainConfig, pretrain
from .config import TrainConfig
from .lora import train

__all__ = ["PretrainConfig", "TrainConfig", "pretrain", "train"]
