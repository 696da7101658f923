"""One self-contained HTML page from one or more run folders: `privsnn report`.

The page gathers whatever the folders hold (every command's JSON, the audit's PNG grids, the
manifests): accuracy against T for the ANN and every SNN variant, energy under each convention with
per-layer bars and the on-chip delay, the privacy audit's verdict and inverted images, the chip
agreement and core mapping, and the provenance chain (artifact, SHA-256, ``real_data_read``).
Plots are Plotly figures (hover values, zoom) with plotly.js inlined once; images are inlined as
base64 PNG; nothing is fetched when the page is opened. Files are recognised by content (their
``format`` field or keys), not by name, so folders written by the CLI, the demo, the Python API or
the benchmarks all work.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .errors import PrivsnnError
from .io_utils import atomic_write

SECTIONS = ("summary", "accuracy", "energy", "privacy", "deployment", "provenance")


@dataclass
class RunData:
    """What :func:`collect` found, each entry tagged with the file it came from (relative path)."""

    accuracy: list[dict[str, Any]] = field(default_factory=list)  # evaluate outputs with "results"
    ann: list[dict[str, Any]] = field(default_factory=list)  # evaluate outputs of an ANN only
    energy: list[dict[str, Any]] = field(default_factory=list)
    privacy: list[dict[str, Any]] = field(default_factory=list)
    chip: list[dict[str, Any]] = field(default_factory=list)  # simulate outputs
    mapping: list[dict[str, Any]] = field(default_factory=list)
    choose_t: list[dict[str, Any]] = field(default_factory=list)
    manifests: list[dict[str, Any]] = field(default_factory=list)


def _kind(d: Any, name: str) -> str | None:
    if not isinstance(d, dict):
        return None
    fmt = d.get("format")
    if fmt == "privsnn-energy/1":
        return "energy"
    if fmt == "privsnn-privacy/1":
        return "privacy"
    if fmt == "privsnn-manifest/1":
        return "manifests"
    if "engine" in d and "agreement" in d and "runs" in d:
        return "chip"
    if "cores_needed" in d and "layers" in d and "target" in d:
        return "mapping"
    if "agreement_by_t" in d or ("chosen_t" in d and "agreement" in d):
        return "choose_t"
    if isinstance(d.get("results"), list) and d["results"] and all("timesteps" in r and "accuracy" in r
                                                                    for r in d["results"]):
        return "accuracy"
    if "accuracy" in d and "model" in d and "n" in d and "snn" not in d:
        return "ann"
    return None


def collect(run_dirs: list[str | Path], base: str | Path | None = None) -> RunData:
    """Read every recognised JSON file under ``run_dirs`` (recursively). Identical files (the demo
    writes the audit twice) are kept once. ``base`` is where recorded paths are made relative to
    (default: the working directory)."""
    data, seen = RunData(), set()
    base = Path(base or Path.cwd())
    for run in run_dirs:
        root = Path(run)
        if not root.is_dir():
            raise PrivsnnError(f"{root}: not a folder (pass run folders written by privsnn commands or the demo)")
        for f in sorted(root.rglob("*.json")):
            try:
                d = json.loads(f.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError, OSError):
                continue  # not ours: a report skips what it cannot read
            kind = _kind(d, f.name)
            if kind is None:
                continue
            digest = hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()
            if (kind, digest) in seen:
                continue
            seen.add((kind, digest))
            d["_file"] = os.path.relpath(f.resolve(), base.resolve())
            d["_dir"] = str(f.parent)
            d["_run"], d["_multi"] = root.resolve().name, len(run_dirs) > 1
            if kind == "manifests":
                d["_artifact"] = f.name[:-len(".manifest.json")] if f.name.endswith(".manifest.json") else f.parent.name
            getattr(data, kind).append(d)
    return data


# --- figures ----------------------------------------------------------------------------------

def _fig_html(fig) -> str:
    fig.update_layout(template="plotly_white", margin=dict(l=60, r=20, t=50, b=60), height=380,
                      font=dict(size=12))
    return fig.to_html(include_plotlyjs=False, full_html=False, config={"displaylogo": False, "responsive": True})


def _accuracy_figure(data: RunData) -> str | None:
    import plotly.graph_objects as go

    if not data.accuracy:
        return None
    fig = go.Figure()
    ts_all = sorted({r["timesteps"] for d in data.accuracy for r in d["results"]})
    ann = _ann_accuracy(data)
    for d in data.accuracy:
        rs = sorted(d["results"], key=lambda r: r["timesteps"])
        fig.add_trace(go.Scatter(x=[r["timesteps"] for r in rs], y=[100 * r["accuracy"] for r in rs],
                                 mode="lines+markers", name=_label(d),
                                 hovertemplate="T=%{x}: %{y:.2f}%<extra>" + html.escape(_label(d)) + "</extra>"))
    if ann is not None and ts_all:
        fig.add_trace(go.Scatter(x=[min(ts_all), max(ts_all)], y=[100 * ann, 100 * ann], mode="lines",
                                 name=f"ANN ({100 * ann:.2f}%)", line=dict(dash="dash", color="black"),
                                 hovertemplate="ANN %{y:.2f}%<extra></extra>"))
    fig.update_xaxes(type="log", title="timesteps T", tickvals=ts_all, ticktext=[str(t) for t in ts_all])
    fig.update_yaxes(title="accuracy on the real test images (%)")
    fig.update_layout(title="Accuracy against timesteps")
    return _fig_html(fig)


def _energy_figure(e: dict[str, Any]) -> str:
    import plotly.graph_objects as go

    order = [n for n in e.get("source", {}).get("node_order", [])]
    fig = go.Figure()
    for conv, color in (("all_timesteps", "#e07b24"), ("loihi", "#2a9d8f")):
        per_layer = e["conventions"][conv].get("snn_per_layer_pj", {})
        names = [n for n in order if n in per_layer] or list(per_layer)
        fig.add_trace(go.Bar(x=names, y=[per_layer[n] / 1e3 for n in names], name=_CONV_TITLES[conv],
                             marker_color=color, hovertemplate="%{x}: %{y:.4g} nJ<extra>" + conv + "</extra>"))
    fig.update_layout(barmode="group", title=f"SNN energy per layer and image, T={e['timesteps']}")
    fig.update_yaxes(title="nJ per image", type="log")
    return _fig_html(fig)


def _mapping_figure(m: dict[str, Any]) -> str:
    import plotly.graph_objects as go

    rows = m["layers"]
    fig = go.Figure(go.Bar(x=[r["layer"] for r in rows], y=[r["cores"] for r in rows],
                           marker_color=["#6c757d" if r["kind"] == "relay" else "#3a86ff" for r in rows],
                           customdata=[[r["neurons"], r["synapses"], r["bound_by"]] for r in rows],
                           hovertemplate="%{x}: %{y} cores<br>%{customdata[0]} neurons, %{customdata[1]} synapses"
                                         "<br>bound by %{customdata[2]}<extra></extra>"))
    fig.update_layout(title=f"Cores per layer on {m['target']['label']} ({m['cores_needed']} cores, "
                            f"{'fits one chip' if m['fits_one_chip'] else str(m['chips_needed']) + ' chips'})")
    fig.update_yaxes(title="cores")
    return _fig_html(fig)


_CONV_TITLES = {"per_timestep": "Paper convention (per timestep)", "all_timesteps": "All timesteps (honest, 45 nm)",
                "memory_aware": "Memory-aware (vs int8 ANN)", "loihi": "Loihi-1 proxy"}


# --- sections ---------------------------------------------------------------------------------

def _label(d: dict[str, Any]) -> str:
    """``converted`` for ``eval_converted.json`` (the demo's names), else the SNN file's name; with
    several run folders, the folder too."""
    stem = Path(d["_file"]).stem
    name = stem[len("eval_"):] if stem.startswith("eval_") else Path(str(d.get("snn") or stem)).name
    return f"{name} ({d['_run']})" if d.get("_multi") else name


def _ann_accuracy(data: RunData) -> float | None:
    for d in data.ann + data.accuracy:
        if d.get("ann_accuracy") is not None:
            return float(d["ann_accuracy"])
    return None


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def _pm(entry: dict[str, Any], key: str) -> str:
    v, se = entry.get(key), entry.get(f"{key}_se")
    return _pct(v) + ("" if v is None or se is None else f" ± {100 * se:.1f}")


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path, alt: str) -> str:
    b64 = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}"><figcaption>{html.escape(alt)}' \
           f"</figcaption></figure>"


def _missing(what: str, how: str) -> str:
    return f'<p class="missing">No {what} in these run folders. Make one with <code>{html.escape(how)}</code>.</p>'


def _section_summary(data: RunData) -> str:
    items = []
    ann = _ann_accuracy(data)
    if ann is not None:
        items.append(f"ANN accuracy: <b>{_pct(ann)}</b>")
    for d in data.accuracy:
        best = max(d["results"], key=lambda r: r["accuracy"])
        small = min(d["results"], key=lambda r: r["timesteps"])
        items.append(f"{html.escape(_label(d))}: best <b>{_pct(best['accuracy'])}</b> at T={best['timesteps']}; "
                     f"{_pct(small['accuracy'])} at T={small['timesteps']}")
    for e in data.energy:
        c = e["conventions"]
        lat = e.get("latency", {})
        delay = (f"; on-chip delay {lat['latency_ms_per_image']:.3g} ms/image" if lat.get("available") else "")
        items.append(f"energy at T={e['timesteps']}: ANN/SNN <b>{c['all_timesteps']['ratio']:.3g}x</b> honest (all "
                     f"timesteps), {c['per_timestep']['ratio']:.3g}x per timestep{delay}")
    for p in data.privacy:
        items.append(f"privacy audit: <b>{html.escape(p['verdict'])}</b>")
    for s in data.chip:
        items.append(f"chip ({html.escape(s.get('engine', ''))}) on {s['n']} images: accuracy {_pct(s['accuracy'])}, "
                     f"agreement with the SNN <b>{_pct(s['agreement'])}</b>")
    real = [m for m in data.manifests if m.get("real_data_read")]
    items.append(f"real data read by any artifact: <b>{'yes: ' + ', '.join(m['_artifact'] for m in real) if real else 'no'}"
                 f"</b> ({len(data.manifests)} manifests)")
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _section_accuracy(data: RunData) -> str:
    fig = _accuracy_figure(data)
    if fig is None:
        return _missing("accuracy results", "privsnn evaluate --snn S --data D --timesteps 1,2,4,8 --json eval.json")
    ts = sorted({r["timesteps"] for d in data.accuracy for r in d["results"]})
    rows = []
    for d in data.accuracy:
        by_t = {r["timesteps"]: r["accuracy"] for r in d["results"]}
        rows.append([_label(d), d.get("data", ""), d.get("n", "")] + [_pct(by_t.get(t)) if t in by_t else "" for t in ts])
    out = fig + _table(["SNN", "data", "images"] + [f"T={t}" for t in ts], rows)
    for c in data.choose_t:
        out += f"<p>choose-t ({html.escape(c['_file'])}): {html.escape(json.dumps({k: v for k, v in c.items() if not k.startswith('_')})[:400])}</p>"
    return out


def _section_energy(data: RunData) -> str:
    if not data.energy:
        return _missing("energy report", "privsnn energy --snn S --data D --out energy/")
    out = []
    for e in data.energy:
        rows = [[_CONV_TITLES.get(k, k), f"{c['snn_pj'] / 1e6:.4g} uJ",
                 "n/a" if c.get("ann_pj") is None else f"{c['ann_pj'] / 1e6:.4g} uJ",
                 "n/a" if c.get("ratio") is None else f"{c['ratio']:.3g}x"] for k, c in e["conventions"].items()]
        src = e.get("source", {})
        out.append(f"<h3>{html.escape(Path(str(src.get('snn') or e['_file'])).name)} at T={e['timesteps']} "
                   f"({e['samples']} images; {html.escape(str(src.get('images', '')))})</h3>")
        out.append(_table(["convention", "SNN / image", "ANN / image", "ANN / SNN"], rows))
        lat = e.get("latency", {})
        if lat.get("available"):
            out.append(_table(["on-chip delay (Loihi-1 timing)", "value"], [
                ["per image", f"{lat['latency_ms_per_image']:.4g} ms ({lat['steps_per_image']} steps: T={lat['timesteps']}"
                              f" + {lat['pipeline_lag_steps']} pipeline)"],
                ["per timestep", f"{lat['timestep_us']:.4g} us (busiest layer {lat['busiest_layer']}, barrier "
                                 f"{lat['barrier_us']:.3g} us)"],
                ["throughput", f"{lat['throughput_images_per_s']:.4g} images/s on {lat['cores']} cores, "
                               f"{lat['chips']} chip(s)"],
                ["energy x delay (Loihi proxy)",
                 f"{lat['loihi_energy_delay_js']:.3g} J s" if "loihi_energy_delay_js" in lat else "n/a"]]))
            out.append(f"<p class='note'>{html.escape(lat['description'])}</p>")
        else:
            out.append(f"<p class='note'>on-chip delay not estimated: {html.escape(str(lat.get('reason', 'n/a')))}</p>")
        out.append(_energy_figure(e))
    return "".join(out)


def _section_privacy(data: RunData) -> str:
    if not data.privacy:
        return _missing("privacy audit", "privsnn attack --snn S --data D --out audit/")
    out = []
    for p in data.privacy:
        out.append(f"<p class='verdict'>{html.escape(p['verdict'])}</p>")
        rows = []
        for name, v in p["variants"].items():
            rows.append([name, _pct(v.get("accuracy")), _pct(v.get("weights_as_ann_accuracy"))]
                        + [_pm(v, k) for k in ("relu_inversion_accuracy", "inversion_accuracy",
                                               "snn_inversion_accuracy", "prior_inversion_accuracy")])
        out.append(_table(["variant", "accuracy", "weights read as ANN", "(a) inversion, plain ReLU reading",
                           "(b) inversion, rescaled reading", "(c) inversion through the SNN",
                           "(d) inversion with a public-data prior"], rows))
        out.append(f"<p class='note'>chance {_pct(p.get('chance'))}; {p.get('n_inverted')} inverted images per variant, "
                   f"scored by an independent evaluator ({html.escape(str(p.get('evaluator', {}).get('spec')))}).</p>")
        for name, v in p["variants"].items():
            routes = v.get("snn_inversion_readings_tried") or {}
            if len(routes) > 1:  # attacker (c) also inverted surrogates distilled from the SNN (attack --distil)
                out.append(f"<p class='note'>(c) on {html.escape(name)}, every route tried (evaluator accuracy, share "
                           "the SNN itself puts in the target class): " + "; ".join(
                               f"{html.escape(r)} {_pct(t.get('evaluator'))}, {_pct(t.get('self'))}"
                               for r, t in routes.items())
                           + f"; counted: {html.escape(str(v.get('snn_inversion_reading')))}.</p>")
        pngs = []
        for name, v in p["variants"].items():
            for key in ("relu_inversion_png", "inversion_png", "snn_inversion_png", "prior_inversion_png"):
                f = v.get(key)
                if f and (Path(p["_dir"]) / f).is_file():
                    pngs.append(_img(Path(p["_dir"]) / f, f"{name}: {key.replace('_png', '').replace('_', ' ')}"))
        out.append("<div class='grid'>" + "".join(pngs) + "</div>")
    return "".join(out)


def _section_deployment(data: RunData) -> str:
    if not data.chip and not data.mapping:
        return _missing("deployment results", "privsnn export --target lava ... && privsnn simulate --json sim.json ...")
    out = []
    for s in data.chip:
        cross = s.get("lava_cross_check", {})
        rows = [["engine", s.get("engine")], ["images", s["n"]], ["chip accuracy", _pct(s["accuracy"])],
                ["SNN accuracy", _pct(s.get("snn_accuracy"))], ["agreement chip vs SNN", _pct(s["agreement"])],
                ["timesteps", s.get("timesteps")],
                ["Lava cross-check", (("bit-exact" if cross.get("bit_exact") else "NOT bit-exact") + f" on {cross.get('images')} images")
                 if "bit_exact" in cross else cross.get("skipped", "n/a")]]
        out.append(_table(["chip simulation (" + s["_file"] + ")", ""], rows))
    for m in data.mapping:
        out.append(_mapping_figure(m))
    return "".join(out)


def _section_provenance(data: RunData) -> str:
    if not data.manifests:
        return _missing("manifests", "any privsnn command that writes an artifact")
    rows = []
    for m in sorted(data.manifests, key=lambda m: m.get("created", "")):
        parents = ", ".join(f"{p.get('role')}: {Path(str(p.get('path') or p.get('spec') or '')).name}"
                            f" ({str(p.get('sha256') or '')[:12]})" for p in m.get("parents", []))
        rows.append([m["_artifact"], m.get("kind"), f"privsnn {m.get('command')}", str(m.get("sha256") or "")[:16],
                     "yes" if m.get("real_data_read") else "no", "yes" if m.get("private") else "no", parents])
    return _table(["artifact", "kind", "made by", "sha256", "real data read", "private", "inputs (sha256)"], rows)


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}.note{color:#555;font-size:.85em}.missing{color:#a33}.verdict{font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}figure img{max-width:320px;border:1px solid #ddd}
figcaption{font-size:.8em;color:#555}nav a{margin-right:1em}
@media print{nav{display:none}section{break-inside:avoid-page}body{max-width:none}}
"""


def render(data: RunData, title: str = "privsnn report") -> str:
    """The whole page as one string (plotly.js inlined)."""
    from plotly.offline import get_plotlyjs

    bodies = {"summary": _section_summary(data), "accuracy": _section_accuracy(data),
              "energy": _section_energy(data), "privacy": _section_privacy(data),
              "deployment": _section_deployment(data), "provenance": _section_provenance(data)}
    nav = "".join(f'<a href="#{s}">{s}</a>' for s in SECTIONS)
    sections = "".join(f'<section id="{s}"><h2>{s.capitalize()}</h2>{bodies[s]}</section>' for s in SECTIONS)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style><script>{get_plotlyjs()}</script></head><body>"
            f"<h1>{html.escape(title)}</h1><p class='note'>privsnn {__version__}, {stamp}. Self-contained: "
            f"no network access is needed to view this page.</p><nav>{nav}</nav>{sections}</body></html>")


def write_report(run_dirs: list[str | Path], out: str | Path, title: str = "privsnn report") -> Path:
    """Collect ``run_dirs`` and write the page to ``out`` (atomically); returns ``out``."""
    out = Path(out)
    data = collect(run_dirs, base=out.parent)
    page = render(data, title)
    atomic_write(out, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return out
