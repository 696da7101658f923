"""Torch modules for the graph's synaptic layers, shared by the graph ANN and the SNN."""

from __future__ import annotations

import torch
import torch.nn as nn

from .graph import AvgPool, Conv, Flatten, Graph, Linear, MaxPool


def module_key(name: str) -> str:
    """A ModuleDict-safe key for a node name."""
    return name.replace(".", "_")


def build_synapses(graph: Graph) -> nn.ModuleDict:
    """nn.Conv2d / nn.Linear / pooling / flatten modules for the graph's non-neuron nodes,
    initialised from the graph's tensors. Fixed routing convs get ``requires_grad=False``."""
    mods = nn.ModuleDict()
    for node in graph:
        if isinstance(node, Conv):
            co, ci, kh, kw = node.weight.shape
            m = nn.Conv2d(ci * node.groups, co, (kh, kw), node.stride, node.padding, groups=node.groups,
                          bias=node.bias is not None)
            _copy(m, node)
        elif isinstance(node, Linear):
            m = nn.Linear(node.weight.shape[1], node.weight.shape[0], bias=node.bias is not None)
            _copy(m, node)
        elif isinstance(node, MaxPool):
            continue  # spiking/ANN variants differ; built by the caller
        elif isinstance(node, AvgPool):
            m = nn.AvgPool2d(node.kernel, node.stride, node.padding)
        elif isinstance(node, Flatten):
            m = nn.Flatten()
        else:
            continue
        mods[module_key(node.name)] = m
    return mods


def _copy(m: nn.Module, node) -> None:
    with torch.no_grad():
        m.weight.copy_(node.weight)
        if node.bias is not None:
            m.bias.copy_(node.bias)
    if not node.trainable:
        m.weight.requires_grad_(False)
        if m.bias is not None:
            m.bias.requires_grad_(False)


def write_back(graph: Graph, mods: nn.ModuleDict) -> None:
    """Copy trained weights from ``mods`` into the graph's nodes."""
    for node in graph:
        if isinstance(node, (Conv, Linear)):
            m = mods[module_key(node.name)]
            node.weight = m.weight.detach().cpu().clone()
            node.bias = None if m.bias is None else m.bias.detach().cpu().clone()
