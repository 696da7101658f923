"""Synthetic images from a pretrained classifier, without real data (PrivateSNN step 2)."""

from .driver import METHODS, SynthConfig, default_method, generate, make_config, synthesize, target_agreement
from .store import SyntheticSet, load_synthetic, save_synthetic

__all__ = ["METHODS", "SynthConfig", "default_method", "generate", "make_config", "synthesize",
           "target_agreement", "SyntheticSet", "load_synthetic", "save_synthetic"]
