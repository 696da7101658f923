"""On-chip delay and throughput per image, estimated from the core mapping and the spike counts.

A Loihi-style chip advances all cores in lock step: in each timestep every core applies the
synaptic events that reached it and updates its neurons, then the mesh synchronises (a barrier).
So one timestep takes as long as the busiest core plus the barrier:

    t_step = max over layers [ (synaptic ops per step / cores) x t_synop
                               + (neurons / cores) x (active share x t_active + (1 - share) x t_inactive) ]
             + t_barrier(tiles)

with synaptic ops per step of a layer = sum over its inputs of (source spikes per step x synapses
per source neuron), the layer's synaptic ops spread evenly over its cores (from
:func:`~privatesnn.hw_targets.mapping.resource_map`), and ``t_barrier`` interpolated between the
published 1-tile and 32-tile figures. One image takes ``plan.period`` steps (T plus the pipeline
lag of the output, one step per synaptic hop), and images run one after another (state is reset
between images), so throughput = 1 / latency. The constants (Davies et al. 2018, Table 2,
pre-silicon) are in ``energy_models.json`` section ``loihi_timing``, each with its citation.

Not modelled: host I/O (writing the input currents, reading the output), congestion on the mesh,
cores waiting on each other within a step, and Loihi 2's faster cores; the figures are a lower
bound on the delay of a first-generation chip.
"""

from __future__ import annotations

from typing import Any

from .energy_models import EnergyModel
from .plan import DeployPlan


def barrier_ns(cores: int, m: EnergyModel) -> float:
    """Barrier time for a mesh of ``cores`` cores: linear in tiles between the 1- and 32-tile figures."""
    tiles = max(1, -(-cores // int(m["loihi_timing.cores_per_tile"])))
    lo, hi = m["loihi_timing.barrier_sync_min_ns"], m["loihi_timing.barrier_sync_max_ns"]
    return lo + (hi - lo) * (min(tiles, 32) - 1) / 31


def estimate_latency(plan: DeployPlan, mapping: dict[str, Any], neurons: list[dict[str, Any]],
                     model: EnergyModel) -> dict[str, Any]:
    """Delay per timestep and per image, and images per second, for ``plan`` mapped as ``mapping``.

    ``neurons`` are the per-layer counts of :class:`~privatesnn.ops_count.SNNCounts` (per image, all
    T steps: ``spikes``, ``updates``, ``active_updates``); a relay layer repeats its source's spikes."""
    T = plan.timesteps
    counts = {n["name"]: n for n in neurons}
    cores = {r["layer"]: r["cores"] for r in mapping["layers"]}
    t_syn = model["loihi_timing.synop_ns"]
    t_act, t_inact = model["loihi_timing.neuron_update_active_ns"], model["loihi_timing.neuron_update_inactive_ns"]

    def spikes_per_step(name: str) -> float:
        base = name.split("__relay")[0]
        return float(counts[base]["spikes"]) / T if base in counts else 0.0

    rows = []
    for layer in list(plan.layers.values()) + [plan.output]:
        c = max(1, cores.get(layer.name, 1))
        synops = sum(spikes_per_step(t.src) * t.synapse_count() / max(1, _src_size(plan, t.src)) for t in layer.terms)
        own = counts.get(layer.name.split("__relay")[0])
        share = float(own["active_updates"]) / max(1.0, float(own["updates"])) if own else 0.0
        neuron_ns = layer.size / c * (share * t_act + (1 - share) * t_inact)
        core_ns = synops / c * t_syn + neuron_ns
        rows.append({"layer": layer.name, "kind": layer.kind, "cores": c, "synops_per_step": synops,
                     "neurons": layer.size, "core_ns_per_step": core_ns})
    total_cores = sum(max(1, r["cores"]) for r in mapping["layers"])
    busiest = max(rows, key=lambda r: r["core_ns_per_step"])
    step_ns = busiest["core_ns_per_step"] + barrier_ns(total_cores, model)
    steps = plan.period
    latency_s = steps * step_ns * 1e-9
    return {
        "target": mapping["target"]["name"], "timesteps": T, "steps_per_image": steps,
        "pipeline_lag_steps": steps - T, "cores": total_cores,
        "timestep_us": step_ns / 1e3, "barrier_us": barrier_ns(total_cores, model) / 1e3,
        "busiest_layer": busiest["layer"], "latency_ms_per_image": latency_s * 1e3,
        "throughput_images_per_s": 1.0 / latency_s if latency_s > 0 else None,
        "layers": rows,
        "description": ("lock-step timesteps: busiest core (synaptic ops x t_synop + neuron updates x t_update, "
                        "spread evenly over the layer's cores) + mesh barrier; steps per image = T + pipeline lag; "
                        "images one after another. Host I/O and mesh congestion not modelled: a lower bound."),
    }


def latency_for_graph(graph, timesteps: int, neurons: list[dict[str, Any]], model: EnergyModel,
                      target: str = "loihi1") -> dict[str, Any]:
    """:func:`estimate_latency` for an SNN graph on as many ``target`` chips as it needs; a graph
    that cannot be deployed gives ``{"available": False, "reason": ...}`` instead of raising."""
    from privatesnn.errors import PrivsnnError

    from .mapping import resource_map
    from .plan import build_plan
    from .targets import get_target

    try:
        plan = build_plan(graph, timesteps)
    except PrivsnnError as e:
        return {"available": False, "reason": str(e)}
    tgt = get_target(target)
    mapping = resource_map(plan, tgt, 1)
    mapping = resource_map(plan, tgt, max(1, mapping["chips_needed"]))
    return {"available": True, "chips": mapping["chips"], **estimate_latency(plan, mapping, neurons, model)}


def _src_size(plan: DeployPlan, name: str) -> int:
    layer = plan.layers.get(name)
    return layer.size if layer is not None else 1
