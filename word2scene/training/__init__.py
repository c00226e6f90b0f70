"""Training: the concept LoRA fine-tune (lora) and the Word2Scene-mini base model (base_model)."""
from .base_model import PretrainConfig, pretrain
from .lora import TrainConfig, train

__all__ = ["PretrainConfig", "TrainConfig", "pretrain", "train"]
