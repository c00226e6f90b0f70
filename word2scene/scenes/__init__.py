"""Making scenes: sampling, cross-attention heat maps (capture, aggregation, runs), rendering,
and the strength study."""
from .aggregation import HeatMaps
from .heatmaps import generate_with_heatmaps
from .sampling import SamplingSettings, generate
from .strength_study import strength_grid

__all__ = ["HeatMaps", "SamplingSettings", "generate", "generate_with_heatmaps", "strength_grid"]
