"""Energy models as data, and the four energy conventions privsnn reports.

The constants live in ``energy_models.json`` next to this file, each with its citation; a user can
pass a complete file of their own (``privsnn energy --energy-model FILE``), validated here with
errors that name the field. Energies are in picojoules (pJ) throughout; reports convert.

The conventions take op counts per sample (``SNNCounts.to_dict()`` / ``ANNCounts.to_dict()`` from
:mod:`privatesnn.ops_count`) and return the SNN energy, the ANN energy and ``ratio`` = ANN / SNN:

``per_timestep`` (the convention of the Panda-lab papers PrivateSNN follows,
    ``E_SNN = sum_l FLOPs_l * R_l * E_AC`` with R_l a per-timestep spike rate): every SNN op count is
    divided by T (one average timestep). Synaptic ops only, on both sides: ACs x fp32 ADD 0.9 pJ,
    MACs x fp32 MAC 4.6 pJ. A direct-coded first layer is counted as MACs once (its T passes / T),
    i.e. exactly the ANN's first layer; a rate-coded first layer receives spikes and is ACs (the
    paper's own coding). ANN: dense MACs x 4.6 pJ (a fixed residual shortcut, which the ANN adds,
    x 0.9 pJ per addition). No neuron, bias or pooling ops.
``all_timesteps`` (honest 45 nm count): all T steps. SNN: effective ACs x 0.9 pJ + effective MACs
    (direct-coded input every step, pooled-spike inputs) x 4.6 pJ, plus neuron work at fp32: one
    threshold compare per neuron update, one subtraction per reset, one multiply per leaky update,
    one bias add per output per step, one add per pooling input. ANN: dense MACs x 4.6 pJ plus one
    ReLU compare per neuron, one bias add per output, pooling and residual adds.
    ``ratio_synaptic_only`` = ANN (dense MACs + residual adds) / SNN synaptic ops (ACs + MACs) energy.
    ``ratio_input_once`` = the same count with a layer whose input is the same at every step (a
    direct-coded image) computed once per image instead of T times: its current does not change, and
    the Lava deployment computes it once on the host and holds it as a bias (``snn_pj_input_once``).
    Every other op still counts at every step; reported beside ``ratio``, never instead of it.
``memory_aware`` (in the spirit of Yan et al. 2024, arXiv 2409.08290: data movement, not only
    arithmetic, against an equally quantized ANN). Both sides are int8-weight, sparsity-aware
    (zero activations / silent neurons are skipped) and read their weights from SRAM for every
    effective op (no weight reuse, the same assumption on both sides):
      SNN = sum over synaptic ops  [ AC: int32 add | MAC: int8 mult + int32 add ] + w_bits * e_bit
          + input reads per layer and step (spike map: s_bits, analog input: a_bits) * e_bit
          + per neuron update: compare (int32 add) + membrane read and write 2 * v_bits * e_bit
            + spike write s_bits * e_bit; per reset: int32 add; per leaky update: int8 mult
          + readout: membrane read and write per output per step; bias adds and pooling adds: int32 add
      ANN = sum over effective MACs [ int8 mult + int32 add + w_bits * e_bit ]
          + each input activation read once per layer (a_bits * e_bit)
          + per ReLU neuron: compare (int32 add) + activation write (a_bits * e_bit)
          + bias adds, pooling adds (int32 add); logits written once
    ``e_bit`` = SRAM energy per bit (Horowitz 8 KB SRAM, 10 pJ / 64 bit).
``loihi`` (Loihi-1 pre-silicon per-op proxy, Davies et al. 2018 Table 2): synaptic ops (ACs, MACs of
    an analog input charged as synaptic ops, pooling adds as synapses) x 23.6 pJ + active neuron
    updates x 81 pJ + inactive x 52 pJ + every spike (and rate-coded input spike) x (1.7 pJ within
    tile + hops x 3.5 pJ). No ANN runs on Loihi: ``ratio`` is null (no ANN baseline is claimed).

A residual shortcut kept in the graph as a fixed 0/1-pattern conv (``routing``) is a synaptic layer
of the SNN (its weight scales the spikes: ACs, on every side) but an addition in the ANN.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privatesnn.errors import PrivsnnError

FORMAT = "privsnn-energy-model/1"
DEFAULT_PATH = Path(__file__).resolve().parent / "energy_models.json"
CONVENTIONS = ("per_timestep", "all_timesteps", "memory_aware", "loihi")

REQUIRED: dict[str, tuple[str, ...]] = {
    "cmos45": ("fp32_mac_pj", "fp32_ac_pj", "fp32_mult_pj", "int32_mac_pj", "int32_ac_pj", "int8_mac_pj",
               "int8_mult_pj", "int8_ac_pj", "sram_read_64bit_pj"),
    "memory_aware": ("sram_pj_per_bit", "weight_bits", "activation_bits", "membrane_bits", "spike_bits"),
    "loihi": ("synop_pj", "neuron_update_active_pj", "neuron_update_inactive_pj", "spike_within_tile_pj",
              "hop_pj", "hops_per_spike"),
    "loihi_timing": ("synop_ns", "neuron_update_active_ns", "neuron_update_inactive_ns", "barrier_sync_min_ns",
                     "barrier_sync_max_ns", "cores_per_tile"),
}
POSITIVE = {"memory_aware.weight_bits", "memory_aware.activation_bits", "memory_aware.membrane_bits",
            "memory_aware.spike_bits", "loihi_timing.cores_per_tile"}


class EnergyModelError(PrivsnnError):
    """An energy-model file is missing, not JSON, or lacks / mangles a field."""


@dataclass
class EnergyModel:
    """Validated constants: ``values["loihi.synop_pj"] == 23.6``; ``citations`` likewise."""

    name: str
    values: dict[str, float]
    citations: dict[str, str]
    path: str
    raw: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> float:
        return self.values[key]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": portable_path(self.path),
                "constants": {k: {"value": v, "citation": self.citations[k]} for k, v in self.values.items()}}


def portable_path(path: str) -> str:
    """``path`` as recorded in results: the shipped table relative to the package, anything else
    relative to the working directory (no machine-specific absolute paths)."""
    import os

    p = Path(path)
    if p.resolve() == DEFAULT_PATH:
        return "privatesnn/hw_targets/energy_models.json (shipped with privsnn)"
    return os.path.relpath(p.resolve(), Path.cwd()) if p.is_absolute() else str(p)


def load_energy_model(path: str | Path | None = None) -> EnergyModel:
    """Read and validate an energy-model file (default: the table shipped with privsnn)."""
    p = Path(path) if path is not None else DEFAULT_PATH
    if not p.is_file():
        raise EnergyModelError(f"energy model file not found: {p}")
    try:
        raw = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EnergyModelError(f"{p}: not valid JSON ({e})") from None
    return validate_energy_model(raw, str(p))


def validate_energy_model(raw: Any, source: str = "<energy model>") -> EnergyModel:
    """Check every required field; raise EnergyModelError naming the first bad one."""
    if not isinstance(raw, dict):
        raise EnergyModelError(f"{source}: expected a JSON object with sections {', '.join(REQUIRED)}")
    if raw.get("format", FORMAT) != FORMAT:
        raise EnergyModelError(f"{source}: field 'format' is {raw.get('format')!r}, expected {FORMAT!r}")
    values: dict[str, float] = {}
    citations: dict[str, str] = {}
    for section, keys in REQUIRED.items():
        sec = raw.get(section)
        if not isinstance(sec, dict):
            raise EnergyModelError(f"{source}: section {section!r} is missing (expected an object with "
                                   f"{', '.join(keys)})")
        for key in keys:
            name = f"{section}.{key}"
            if key not in sec:
                raise EnergyModelError(f"{source}: field {name!r} is missing "
                                       f"(expected {{\"value\": number, \"citation\": \"source\"}})")
            entry = sec[key]
            if not isinstance(entry, dict):
                raise EnergyModelError(f"{source}: field {name!r} must be an object "
                                       f"{{\"value\": number, \"citation\": \"source\"}}, got {entry!r}")
            v = entry.get("value")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise EnergyModelError(f"{source}: field '{name}.value' must be a finite number >= 0, got {v!r}")
            if name in POSITIVE and v <= 0:
                raise EnergyModelError(f"{source}: field '{name}.value' must be > 0, got {v!r}")
            cite = entry.get("citation")
            if not isinstance(cite, str) or not cite.strip():
                raise EnergyModelError(f"{source}: field '{name}.citation' is missing or empty: every constant "
                                       f"needs its source")
            values[name] = float(v)
            citations[name] = cite.strip()
    return EnergyModel(name=str(raw.get("name", Path(source).stem)), values=values, citations=citations,
                       path=source, raw=raw)


# --- the conventions -----------------------------------------------------------------------------

def _syn(layers):
    return [l for l in layers if l["type"] != "avgpool"]


def _pools(layers):
    return [l for l in layers if l["type"] == "avgpool"]


def _ratio(ann: float | None, snn: float) -> float | None:
    if ann is None or not snn > 0:
        return None
    return ann / snn


def _pack(desc: str, snn_layers: dict[str, float], snn_parts: dict[str, float], ann_layers: dict[str, float] | None,
          ann_parts: dict[str, float] | None, **extra) -> dict[str, Any]:
    snn_pj = sum(snn_parts.values())
    ann_pj = sum(ann_parts.values()) if ann_parts is not None else None
    out = {"description": desc, "snn_pj": snn_pj, "ann_pj": ann_pj, "ratio": _ratio(ann_pj, snn_pj),
           "snn_breakdown_pj": snn_parts, "ann_breakdown_pj": ann_parts,
           "snn_per_layer_pj": snn_layers, "ann_per_layer_pj": ann_layers}
    out.update(extra)
    return out


def _add(d: dict[str, float], k: str, v: float) -> None:
    d[k] = d.get(k, 0.0) + v


def per_timestep(snn: dict, ann: dict, m: EnergyModel) -> dict[str, Any]:
    T = snn["timesteps"]
    mac, ac = m["cmos45.fp32_mac_pj"], m["cmos45.fp32_ac_pj"]
    layers, parts = {}, {"synaptic_acs": 0.0, "synaptic_macs": 0.0}
    for l in _syn(snn["layers"]):
        e_ac, e_mac = l["eff_acs"] / T * ac, l["eff_macs"] / T * mac
        layers[l["name"]] = e_ac + e_mac
        parts["synaptic_acs"] += e_ac
        parts["synaptic_macs"] += e_mac
    ann_layers = {l["name"]: l["dense"] * (ac if l.get("routing") else mac) for l in _syn(ann["layers"])}
    ann_parts = {"dense_macs": 0.0, "residual_adds": 0.0}
    for l in _syn(ann["layers"]):
        ann_parts["residual_adds" if l.get("routing") else "dense_macs"] += ann_layers[l["name"]]
    first = "as MACs once (T passes / T)" if snn["encoding"] == "direct" else "as ACs (rate-coded input spikes)"
    desc = (f"Paper-style, PER TIMESTEP: SNN synaptic ops of all {T} steps divided by T; ACs x "
            f"{ac:g} pJ, MACs x {mac:g} pJ (45 nm fp32); the first layer counted {first}; no neuron, bias or "
            f"pooling ops. ANN: dense MACs x {mac:g} pJ (residual shortcut adds x {ac:g} pJ).")
    return _pack(desc, layers, parts, ann_layers, ann_parts)


def all_timesteps(snn: dict, ann: dict, m: EnergyModel) -> dict[str, Any]:
    mac, ac, mult = m["cmos45.fp32_mac_pj"], m["cmos45.fp32_ac_pj"], m["cmos45.fp32_mult_pj"]
    layers: dict[str, float] = {}
    parts = {"synaptic_acs": 0.0, "synaptic_macs": 0.0, "bias_adds": 0.0, "pool_adds": 0.0, "neuron_updates": 0.0}
    for l in snn["layers"]:
        if l["type"] == "avgpool":
            e = l["eff_ops"] * ac
            _add(parts, "pool_adds", e)
        else:
            e_ac, e_mac, e_b = l["eff_acs"] * ac, l["eff_macs"] * mac, l["bias_adds"] * ac
            parts["synaptic_acs"] += e_ac
            parts["synaptic_macs"] += e_mac
            parts["bias_adds"] += e_b
            e = e_ac + e_mac + e_b
        _add(layers, l["name"], e)
    for n in snn["neurons"]:
        if n["readout"]:
            continue  # the readout only accumulates: its ops are the synaptic ones above
        e = n["updates"] * ac + n["spikes"] * ac + (n["updates"] * mult if n["leak"] != 1.0 else 0.0)
        parts["neuron_updates"] += e
        _add(layers, n["name"], e)
    ann_layers: dict[str, float] = {}
    ann_parts = {"dense_macs": 0.0, "residual_adds": 0.0, "bias_adds": 0.0, "pool_adds": 0.0, "relu": 0.0}
    for l in ann["layers"]:
        if l["type"] == "avgpool":
            e = l["dense"] * ac
            ann_parts["pool_adds"] += e
        elif l.get("routing"):
            e = l["dense"] * ac
            ann_parts["residual_adds"] += e
        else:
            e_m, e_b = l["dense"] * mac, l["bias_adds"] * ac
            ann_parts["dense_macs"] += e_m
            ann_parts["bias_adds"] += e_b
            e = e_m + e_b
        _add(ann_layers, l["name"], e)
    for n in ann["neurons"]:
        e = n["neurons"] * ac
        ann_parts["relu"] += e
        _add(ann_layers, n["name"], e)
    snn_syn = parts["synaptic_acs"] + parts["synaptic_macs"]
    T = snn["timesteps"]
    repeats = sum(l["eff_macs"] * mac * (1 - 1 / T) for l in snn["layers"]
                  if l["type"] != "avgpool" and l.get("constant_input"))
    snn_once = sum(parts.values()) - repeats
    desc = (f"Honest, ALL {snn['timesteps']} TIMESTEPS at 45 nm fp32: SNN effective ACs x {ac:g} pJ + effective "
            f"MACs (direct-coded input at every step, pooled-spike inputs) x {mac:g} pJ + neuron work (threshold "
            f"compare per update, subtraction per reset, bias and pooling adds at {ac:g} pJ). ANN: dense MACs x "
            f"{mac:g} pJ + ReLU compares, bias and pooling adds.")
    extra = {}
    kept = _kept_weights(snn)
    if kept:  # a pruned SNN: also against the same ANN with the same weights removed (a zero-skipping ANN)
        saved = sum(l["dense"] * mac * (1.0 - kept[l["name"]]) for l in ann["layers"]
                    if l["type"] != "avgpool" and not l.get("routing") and l["name"] in kept)
        extra = {"ann_pj_pruned_alike": sum(ann_parts.values()) - saved,
                 "ratio_vs_ann_pruned_alike": _ratio(sum(ann_parts.values()) - saved, sum(parts.values())),
                 "weights_kept": kept}
    return _pack(desc, layers, parts, ann_layers, ann_parts,
                 ratio_synaptic_only=_ratio(ann_parts["dense_macs"] + ann_parts["residual_adds"], snn_syn),
                 snn_pj_input_once=snn_once, ratio_input_once=_ratio(sum(ann_parts.values()), snn_once), **extra)


def _kept_weights(snn: dict) -> dict[str, float]:
    """Share of nonzero weights per learned SNN layer, if any layer was pruned (else {})."""
    kept = {l["name"]: l["nonzero_weights"] / l["weights"] for l in snn["layers"]
            if l["type"] != "avgpool" and not l.get("routing") and l.get("weights")}
    return kept if any(v < 0.999 for v in kept.values()) else {}


def memory_aware(snn: dict, ann: dict, m: EnergyModel) -> dict[str, Any]:
    eb = m["memory_aware.sram_pj_per_bit"]
    wb, ab, vb, sb = (m["memory_aware.weight_bits"], m["memory_aware.activation_bits"],
                      m["memory_aware.membrane_bits"], m["memory_aware.spike_bits"])
    add, mul = m["cmos45.int32_ac_pj"], m["cmos45.int8_mult_pj"]
    layers: dict[str, float] = {}
    parts = {"arithmetic": 0.0, "weight_reads": 0.0, "input_reads": 0.0, "membrane_rw": 0.0, "spike_writes": 0.0}
    for l in snn["layers"]:
        in_bits = sb if l["input"] == "spikes" else ab
        reads = l["input_positions"] * in_bits * eb
        if l["type"] == "avgpool":
            arith, wr = l["eff_ops"] * add, 0.0
        else:
            arith = l["eff_acs"] * add + l["eff_macs"] * (mul + add) + l["bias_adds"] * add
            wr = l["eff_ops"] * wb * eb
        parts["arithmetic"] += arith
        parts["weight_reads"] += wr
        parts["input_reads"] += reads
        _add(layers, l["name"], arith + wr + reads)
    for n in snn["neurons"]:
        mem = n["updates"] * 2 * vb * eb
        if n["readout"]:
            arith = spk = 0.0
        else:
            arith = n["updates"] * add + n["spikes"] * add + (n["updates"] * mul if n["leak"] != 1.0 else 0.0)
            spk = n["updates"] * sb * eb
        parts["arithmetic"] += arith
        parts["membrane_rw"] += mem
        parts["spike_writes"] += spk
        _add(layers, n["name"], arith + mem + spk)
    ann_layers: dict[str, float] = {}
    ann_parts = {"arithmetic": 0.0, "weight_reads": 0.0, "input_reads": 0.0, "activation_writes": 0.0}
    for l in ann["layers"]:
        reads = l["input_positions"] * ab * eb
        if l["type"] == "avgpool" or l.get("routing"):  # additions, no weights
            arith, wr = l["eff_ops"] * add, 0.0
        else:
            arith = l["eff_macs"] * (mul + add) + l["bias_adds"] * add
            wr = l["eff_macs"] * wb * eb
        ann_parts["arithmetic"] += arith
        ann_parts["weight_reads"] += wr
        ann_parts["input_reads"] += reads
        _add(ann_layers, l["name"], arith + wr + reads)
    for n in ann["neurons"]:
        arith, wr = n["neurons"] * add, n["neurons"] * ab * eb
        ann_parts["arithmetic"] += arith
        ann_parts["activation_writes"] += wr
        _add(ann_layers, n["name"], arith + wr)
    ann_parts["activation_writes"] += ann["readout"] * ab * eb
    if ann["layers"]:
        _add(ann_layers, ann["layers"][-1]["name"], ann["readout"] * ab * eb)
    desc = (f"Memory-aware (in the spirit of Yan et al. 2024, arXiv 2409.08290), all {snn['timesteps']} "
            f"timesteps: int8 weights read from SRAM ({eb:g} pJ/bit) for every effective op on both sides, "
            f"SNN membranes ({vb:g} bit) read and written every neuron update, spike maps and inputs read per "
            f"step; against an equally sparsity-aware int8 ANN (effective MACs, {ab:g}-bit activations).")
    return _pack(desc, layers, parts, ann_layers, ann_parts)


def loihi(snn: dict, ann: dict, m: EnergyModel) -> dict[str, Any]:
    syn = m["loihi.synop_pj"]
    act, inact = m["loihi.neuron_update_active_pj"], m["loihi.neuron_update_inactive_pj"]
    route = m["loihi.spike_within_tile_pj"] + m["loihi.hops_per_spike"] * m["loihi.hop_pj"]
    layers: dict[str, float] = {}
    parts = {"synaptic_ops": 0.0, "neuron_updates": 0.0, "spike_routing": 0.0}
    for l in snn["layers"]:
        e = l["eff_ops"] * syn
        parts["synaptic_ops"] += e
        _add(layers, l["name"], e)
    for n in snn["neurons"]:
        e_n = n["active_updates"] * act + (n["updates"] - n["active_updates"]) * inact
        e_r = n["spikes"] * route
        parts["neuron_updates"] += e_n
        parts["spike_routing"] += e_r
        _add(layers, n["name"], e_n + e_r)
    if snn.get("totals", {}).get("input_spikes"):
        e = snn["totals"]["input_spikes"] * route
        parts["spike_routing"] += e
        layers["input spikes"] = e
    desc = (f"Loihi-1 pre-silicon per-op proxy (Davies et al. 2018, Table 2), all {snn['timesteps']} timesteps: "
            f"synaptic ops x {syn:g} pJ (minimum; analog-input MACs and pooling adds charged as synaptic ops), "
            f"active / inactive neuron updates x {act:g} / {inact:g} pJ, spikes x {route:g} pJ routing. Static "
            f"power excluded.")
    return _pack(desc, layers, parts, None, None,
                 ratio_note="not defined: no ANN runs on Loihi; absolute SNN energy only (ratio is null)")


FUNCS = {"per_timestep": per_timestep, "all_timesteps": all_timesteps, "memory_aware": memory_aware, "loihi": loihi}


def compute_conventions(snn: dict, ann: dict, model: EnergyModel) -> dict[str, dict[str, Any]]:
    """Energy under each convention for one SNN count dict and its ANN count dict (per sample)."""
    return {name: FUNCS[name](snn, ann, model) for name in CONVENTIONS}


def format_energy(pj: float | None) -> str:
    """``1234.5`` pJ -> ``'1.23 nJ'``; ``None`` -> ``'n/a'``."""
    if pj is None:
        return "n/a"
    for unit, scale in (("J", 1e12), ("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def pj_to_joules(pj: float) -> float:
    return pj * 1e-12
