"""``energy.json``, ``energy.md`` and the PNG plots of `privsnn energy`, built from op counts.

:func:`make_result` turns counts (:mod:`privatesnn.ops_count`) and an energy model
(:mod:`privatesnn.hw_targets.energy_models`) into one JSON-ready dict; :func:`write_report` writes the three
outputs atomically. Every number is per sample (per inference), averaged over the samples counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from privatesnn.hw_targets.energy_models import CONVENTIONS, EnergyModel, compute_conventions, format_energy

from .graph import Graph
from .io_utils import atomic_path, atomic_write, write_json
from .ops_count import ANNCounts, SNNCounts

FORMAT = "privsnn-energy/1"
TITLES = {
    "per_timestep": "Paper convention (per timestep)",
    "all_timesteps": "All timesteps (honest, 45 nm)",
    "memory_aware": "Memory-aware (vs int8 ANN)",
    "loihi": "Loihi-1 proxy",
}


def make_result(snn: SNNCounts, ann: ANNCounts, model: EnergyModel, source: dict[str, Any] | None = None,
                graph: Graph | None = None) -> dict[str, Any]:
    """The content of ``energy.json``: accuracy, ANN counts and energy, per-layer SNN counts, totals,
    the four ``conventions`` (each with ``snn_pj``, ``ann_pj`` and ``ratio`` = ANN / SNN) and, given
    the SNN's ``graph``, the on-chip ``latency`` estimate (:mod:`privatesnn.hw_targets.latency`)."""
    from privatesnn.hw_targets.latency import latency_for_graph

    sd, ad = snn.to_dict(), ann.to_dict()
    conv = compute_conventions(sd, ad, model)
    latency = (latency_for_graph(graph, snn.timesteps, sd["neurons"], model) if graph is not None
               else {"available": False, "reason": "no graph given"})
    if latency.get("available"):  # energy x delay per image, with the Loihi energy proxy (J s)
        latency["loihi_energy_delay_js"] = conv["loihi"]["snn_pj"] * 1e-12 * latency["latency_ms_per_image"] * 1e-3
    ann_energy = {name: c["ann_pj"] for name, c in conv.items() if c["ann_pj"] is not None}
    return {
        "format": FORMAT,
        "source": dict(source or {}),
        "timesteps": snn.timesteps,
        "samples": snn.samples,
        "encoding": snn.encoding,
        "accuracy": snn.accuracy,
        "ann": {"accuracy": ann.accuracy, "dense_macs": ad["totals"]["dense_macs"],
                "effective_macs": ad["totals"]["eff_macs"], "energy_pj": ann_energy, "counts": ad},
        "totals": sd["totals"],
        "layers": sd["layers"],
        "neurons": sd["neurons"],
        "conventions": conv,
        "latency": latency,
        "energy_model": model.to_dict(),
        "units": "counts are per sample (one inference, all timesteps unless stated); energies in pJ per sample",
    }


def _fmt_count(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:.3g}"


def _ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.3g}x"


def render_markdown(res: dict[str, Any]) -> str:
    T, tot, conv = res["timesteps"], res["totals"], res["conventions"]
    src = res.get("source", {})
    acc = res["accuracy"]
    ann_acc = res["ann"]["accuracy"]
    lines = [f"# Energy report: {src.get('snn', 'SNN')}", ""]
    lines += [f"- Counted on {res['samples']} images ({src.get('images', 'n/a')}), T = {T} timesteps, "
              f"{res['encoding']}-coded input. All counts are per image.",
              f"- SNN accuracy at T={T}: {'n/a (no real labels)' if acc is None else f'{100 * acc:.2f}%'}; "
              f"ANN accuracy: {'n/a' if ann_acc is None else f'{100 * ann_acc:.2f}%'}.",
              f"- Energy model: {res['energy_model']['name']} ({res['energy_model']['path']}).", ""]
    lines += ["## ANN / SNN energy under each convention (side by side)", "",
              "| convention | SNN energy / image | ANN energy / image | ratio ANN/SNN |", "|---|---|---|---|"]
    for name in CONVENTIONS:
        c = conv[name]
        lines.append(f"| {TITLES[name]} | {format_energy(c['snn_pj'])} | {format_energy(c['ann_pj'])} | "
                     f"{_ratio(c['ratio'])} |")
    lines.append("")
    at = conv["all_timesteps"]
    lines.append(f"Synaptic ops only, all timesteps: ratio {_ratio(at.get('ratio_synaptic_only'))}. "
                 f"All timesteps with the constant image current computed once per image (as the Lava "
                 f"deployment does): ratio {_ratio(at.get('ratio_input_once'))}. "
                 f"Loihi: {conv['loihi']['ratio_note']}.")
    if at.get("ratio_vs_ann_pruned_alike") is not None:
        kept = at["weights_kept"]
        lines.append(f"Some SNN weights are zero (pruned, or rounded to zero on the chip's grid; up to "
                     f"{100 * (1 - min(kept.values())):.0f}% of a layer), and zero weights cost no synaptic ops: the "
                     f"ratios above are against the user's dense ANN; against the same ANN with the same weights "
                     f"removed, on hardware that skips them, all timesteps: ratio "
                     f"{_ratio(at['ratio_vs_ann_pruned_alike'])}.")
    lines.append("")
    lines.append("What each convention counts (exactly):")
    lines.append("")
    for name in CONVENTIONS:
        lines.append(f"- **{TITLES[name]}** (`{name}`): {conv[name]['description']}")
    lines.append("")
    lat = res.get("latency", {})
    lines += ["## On-chip delay (Loihi-1 timing, lower bound)", ""]
    if lat.get("available"):
        lines += [f"- {lat['latency_ms_per_image']:.3g} ms per image ({lat['steps_per_image']} steps = T {T} + "
                  f"{lat['pipeline_lag_steps']} pipeline steps, {lat['timestep_us']:.3g} us per step, busiest layer "
                  f"{lat['busiest_layer']}, barrier {lat['barrier_us']:.3g} us); "
                  f"{lat['throughput_images_per_s']:.4g} images/s on {lat['cores']} cores ({lat['chips']} chip(s)).",
                  f"- Energy x delay per image (Loihi proxy): "
                  f"{lat['loihi_energy_delay_js']:.3g} J s.",
                  f"- Model: {lat['description']}", ""]
    else:
        lines += [f"- not estimated: {lat.get('reason', 'n/a')}", ""]
    lines.append("The paper's headline (PrivateSNN, ~55x) uses the per-timestep convention; the honest count is "
                 "`all_timesteps`. Neither is tuned: the same counts feed all four.")
    lines += ["", "## Counts per image (NeuroBench-style synaptic operations)", "",
              f"- Dense (all synapses, all steps): {_fmt_count(tot['dense'])}; effective ACs: "
              f"{_fmt_count(tot['eff_acs'])}; effective MACs: {_fmt_count(tot['eff_macs'])}; "
              f"pooling adds: {_fmt_count(tot['pool_adds'])}; bias adds: {_fmt_count(tot['bias_adds'])}.",
              f"- Neuron updates: {_fmt_count(tot['neuron_updates'])} ({_fmt_count(tot['active_updates'])} active); "
              f"spikes: {_fmt_count(tot['spikes'])} (mean rate {tot['spike_rate']:.4f} per neuron per step); "
              f"rate-coded input spikes: {_fmt_count(tot['input_spikes'])}.",
              f"- ANN: dense MACs {_fmt_count(res['ann']['dense_macs'])}, effective MACs (zero inputs skipped) "
              f"{_fmt_count(res['ann']['effective_macs'])}.", ""]
    lines += ["| layer | type | input | dense | eff. ACs | eff. MACs | input events | energy (all T) |",
              "|---|---|---|---|---|---|---|---|"]
    per_layer = at["snn_per_layer_pj"]
    for l in res["layers"]:
        kind = l["type"] + (" (adds)" if l["type"] == "avgpool" else "")
        inp = l["input"] + (f", constant x{T}" if l["constant_input"] else "")
        lines.append(f"| {l['name']} | {kind} | {inp} | {_fmt_count(l['dense'])} | {_fmt_count(l['eff_acs'])} | "
                     f"{_fmt_count(l['eff_macs'])} | {_fmt_count(l['input_events'])} | "
                     f"{format_energy(per_layer.get(l['name']))} |")
    lines += ["", "| neuron layer | neurons | updates | active | spikes | rate / step | energy (all T) |",
              "|---|---|---|---|---|---|---|"]
    for n in res["neurons"]:
        name = n["name"] + (" (readout)" if n["readout"] else "")
        lines.append(f"| {name} | {n['neurons']} | {_fmt_count(n['updates'])} | {_fmt_count(n['active_updates'])} | "
                     f"{_fmt_count(n['spikes'])} | {n['spike_rate']:.4f} | "
                     f"{format_energy(per_layer.get(n['name']))} |")
    lines += ["", "## Constants", "", "| constant | value | source |", "|---|---|---|"]
    for k, v in res["energy_model"]["constants"].items():
        lines.append(f"| `{k}` | {v['value']:g} | {v['citation']} |")
    lines += ["", "Not modelled: static/leakage power, DRAM traffic, control, max-pool comparisons, the spike "
              "encoder, weight reuse in buffers; Loihi figures are pre-silicon minima. See docs/energy.md.", ""]
    return "\n".join(lines)


def _plots(res: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    T = res["timesteps"]

    def save(fig, name):
        p = out / name
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        paths.append(p)

    spiking = [n for n in res["neurons"] if not n["readout"]]
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(spiking) + 2), 3.2))
    ax.bar(range(len(spiking)), [n["spike_rate"] for n in spiking], color="tab:blue")
    ax.set_xticks(range(len(spiking)), [n["name"] for n in spiking], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("spikes / neuron / timestep")
    ax.set_title(f"Spike rate per layer (T={T})", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save(fig, "spike_rate.png")

    names = [l["name"] for l in res["layers"]] + [n["name"] for n in res["neurons"] if not n["readout"]]
    order = [n for n in res["source"].get("node_order", []) if n in names] or names
    fig, axes = plt.subplots(1, 2, figsize=(max(7, 0.5 * len(order) + 4), 3.6), sharey=False)
    for ax, name in zip(axes, ("all_timesteps", "loihi")):
        pl = res["conventions"][name]["snn_per_layer_pj"]
        vals = [pl.get(n, 0.0) / 1e3 for n in order]
        colors = ["tab:orange" if any(l["name"] == n for l in res["layers"]) else "tab:green" for n in order]
        ax.bar(range(len(order)), vals, color=colors)
        ax.set_xticks(range(len(order)), order, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("nJ per image")
        ax.set_title(f"{TITLES[name]}, T={T}\n(orange: synaptic layers, green: neurons)", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save(fig, "energy_per_layer.png")

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    xs = range(len(CONVENTIONS))
    snn = [res["conventions"][c]["snn_pj"] / 1e3 for c in CONVENTIONS]
    ann = [(res["conventions"][c]["ann_pj"] or 0.0) / 1e3 for c in CONVENTIONS]
    ax.bar([x - 0.2 for x in xs], ann, 0.4, label="ANN", color="tab:gray")
    ax.bar([x + 0.2 for x in xs], snn, 0.4, label="SNN", color="tab:blue")
    for x, c in zip(xs, CONVENTIONS):
        r = res["conventions"][c]["ratio"]
        ax.text(x, max(ann[x], snn[x]) * 1.15, "no ANN" if r is None else f"{r:.2g}x", ha="center", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(list(xs), [TITLES[c] for c in CONVENTIONS], fontsize=7, rotation=15)
    ax.set_ylabel("nJ per image (log)")
    ax.set_title(f"ANN vs SNN energy per image, T={T} (label: ANN/SNN)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, "ann_vs_snn.png")
    return paths


def write_report(res: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``energy.json``, ``energy.md`` and the PNG plots into ``out_dir`` (atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(res, out)
    res = {**res, "plots": [p.name for p in plots]}
    write_json(out / "energy.json", res)
    atomic_write(out / "energy.md", lambda tmp: tmp.write_text(render_markdown(res)))
    return {"json": out / "energy.json", "md": out / "energy.md", **{p.stem: p for p in plots}}
