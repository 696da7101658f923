"""privsnn: private, low-power spiking neural networks from pretrained ANNs (PrivateSNN, AAAI 2022)."""

__version__ = "0.1.0"
