"""Privacy audit: class-leakage attacks on the ANN, the converted SNN and the encrypted SNN.

* :mod:`.weights_as_ann`: attack scenario 1, the SNN's weights read as a ReLU ANN;
* :mod:`.inversion`: model inversion (class-representative images) on an ANN or through an SNN;
* :mod:`.audit`: runs every variant, scores with an independent evaluator, writes JSON/MD/PNG.
"""

from .audit import run_audit, verdict
from .inversion import InversionSettings, attack_accuracy, invert, snn_for_inversion
from .weights_as_ann import (ArchitectureMismatchError, RebuiltANN, reference_graph, weight_cosine,
                             weights_as_ann)

__all__ = ["run_audit", "verdict", "InversionSettings", "attack_accuracy", "invert", "snn_for_inversion",
           "ArchitectureMismatchError", "RebuiltANN", "reference_graph", "weight_cosine", "weights_as_ann"]
