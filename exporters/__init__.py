"""Exporters of privsnn's layer graph: NIR (write and read back), lava-dl netx HDF5, ONNX.

* :mod:`exporters.nir_export` / :mod:`exporters.nir_import`: SNN graph <-> ``nir.NIRGraph``.
* :mod:`exporters.netx`: the lava-dl netx ``.net`` format for sequential networks (pooling folded).
* :mod:`exporters.onnx_export`: one SNN timestep with the neuron state as inputs/outputs.
"""
