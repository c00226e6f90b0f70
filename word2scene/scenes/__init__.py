"""Making scenes: sampling, cross-attention heat maps, rendering, and the strength study."""
from .heatmaps import HeatMaps, generate_with_heatmaps
from .sampling import SamplingSettings, generate
from .strength_study import strength_grid

__all__ = ["HeatMaps", "SamplingSettings", "generate", "generate_with_heatmaps", "strength_grid"]
