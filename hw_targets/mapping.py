"""Resource mapping of a deployment plan onto a target: cores per layer, chips, and whether it fits."""

from __future__ import annotations

import math
from typing import Any

from .plan import DeployPlan
from .targets import Target, TargetLimitError


def resource_map(plan: DeployPlan, target: Target, chips: int = 1) -> dict[str, Any]:
    """Cores per layer (neuron and synapse-memory bound), total, and whether it fits."""
    rows = []
    for layer in list(plan.layers.values()) + [plan.output]:
        neurons = layer.size
        synapses = 0 if layer.host_fed else sum(t.synapse_count() for t in layer.terms)
        c_neur = math.ceil(neurons / target.neurons_per_core)
        c_syn = math.ceil(synapses / target.synapses_per_core)
        rows.append({"layer": layer.name, "kind": layer.kind, "neurons": neurons, "synapses": synapses,
                     "cores_for_neurons": c_neur, "cores_for_synapses": c_syn, "cores": max(c_neur, c_syn, 1),
                     "bound_by": "synapses" if c_syn > c_neur else "neurons",
                     "host_fed": layer.host_fed})
    total = sum(r["cores"] for r in rows)
    available = chips * target.cores_per_chip
    chips_needed = math.ceil(total / target.cores_per_chip)
    biggest = sorted(rows, key=lambda r: -r["cores"])[:3]
    advice = []
    if total > target.cores_per_chip:
        advice.append(f"needs {chips_needed} {target.name} chips ({total} cores); pass --chips {chips_needed} "
                      f"for a multi-chip system")
        advice.append("largest layers: " + ", ".join(f"{r['layer']} ({r['cores']} cores, bound by {r['bound_by']})"
                                                      for r in biggest))
        advice.append("to fit one chip: reduce the channel width of the largest layers, prune weights "
                      "(synapse memory dominates convolutions stored per synapse), or lower weight precision")
    return {
        "target": target.to_dict(), "chips": chips, "layers": rows,
        "total_neurons": sum(r["neurons"] for r in rows), "total_synapses": sum(r["synapses"] for r in rows),
        "cores_needed": total, "cores_available": available, "chips_needed": chips_needed,
        "fits_one_chip": total <= target.cores_per_chip, "fits": total <= available, "advice": advice,
        "notes": ["convolution synapses are counted one per in-bounds tap (no weight sharing): an upper bound; "
                  "synapse memory is taken as weight_bits per synapse without index overhead: optimistic",
                  "host-fed layers receive their input current from the host (their synapses are off chip)",
                  "relay layers equalise residual-path delays (one step per synaptic hop on Loihi)"],
    }


def check_fits(mapping: dict[str, Any]) -> None:
    """Raise :class:`TargetLimitError` when the mapping exceeds the requested chips."""
    if mapping["fits"]:
        return
    t = mapping["target"]
    over = mapping["cores_needed"] - mapping["cores_available"]
    worst = max(mapping["layers"], key=lambda r: r["cores"])
    detail = (f"layer {worst['layer']!r} alone needs {worst['cores']} cores "
              f"({worst['synapses']:,} synapses at {t['synapses_per_core']:,} per core; "
              f"{worst['neurons']:,} neurons at {t['neurons_per_core']:,} per core)")
    raise TargetLimitError(
        f"the network needs {mapping['cores_needed']} cores but {mapping['chips']} {t['name']} chip(s) have "
        f"{mapping['cores_available']} (exceeds by {over} cores); {detail}. "
        f"Use --chips {mapping['chips_needed']}, or narrow/prune the largest layers")
