"""Evaluation: metrics (GSHPS, FID, KID, CLIP score), feature extractors and their
backbones, scene classifiers, labelled image sets, scoring, and the paper's protocol."""
from .classifier import train_classifier
from .protocol import ProtocolSettings
from .scoring import EvaluationSettings, evaluate

__all__ = ["EvaluationSettings", "ProtocolSettings", "evaluate", "train_classifier"]
