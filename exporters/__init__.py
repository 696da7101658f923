"""Exporters of privsnn's layer graph: NIR (write and read back), lava-dl netx HDF5, ONNX.

* :mod:`privatesnn.exporters.nir_export` / :mod:`privatesnn.exporters.nir_import`: SNN graph <-> ``nir.NIRGraph``.
* :mod:`privatesnn.exporters.netx`: the lava-dl netx ``.net`` format for sequential networks (pooling folded).
* :mod:`privatesnn.exporters.onnx_export`: one SNN timestep with the neuron state as inputs/outputs.
"""
