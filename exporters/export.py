"""Export an SNN artifact to NIR, Lava (netx HDF5 + fixed point + mapping) or ONNX, with a manifest
chained to the SNN's. The library behind `privsnn export` and :func:`privatesnn.api.export`."""

from __future__ import annotations

from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable

from privatesnn.artifact import load_snn
from privatesnn.errors import PrivsnnError


@dataclass(frozen=True)
class _Request:
    """What the per-target writers need besides the graph: where the SNN came from and how to export."""

    snn: str
    hw: str
    chips: int
    reset: str
    force: bool
    log: Callable[[str], None]


def export_snn(snn: str | Path, target: str, out: str | Path, *, timesteps: int | None = None, hw: str = "loihi2",
               chips: int = 1, reset: str = "match", force: bool = False,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write ``out`` for ``target`` (nir | lava | onnx) from the SNN artifact file ``snn``; returns
    the summary the command prints and records. Nothing half-written is left on failure."""
    if target not in ("nir", "lava", "onnx"):
        raise PrivsnnError(f"--target must be nir, lava or onnx, got {target!r}")
    if hw not in ("loihi1", "loihi2"):
        raise PrivsnnError(f"--hw must be loihi1 or loihi2, got {hw!r}")
    if reset not in ("match", "zero"):
        raise PrivsnnError(f"--reset must be match or zero, got {reset!r}")
    args = _Request(snn=str(snn), hw=hw, chips=chips, reset=reset, force=force, log=log)
    art = load_snn(snn)
    graph = art.graph.copy()
    T = int(art.timesteps if timesteps is None else timesteps)
    if T <= 0 or T > 100_000:
        raise PrivsnnError(f"--timesteps must be in 1..100000, got {T}")
    graph.meta["timesteps"] = T
    out = Path(out)
    if target == "lava":
        return _export_lava(args, art, graph, T, out)
    if out.exists() and not force:
        raise PrivsnnError(f"{out} exists; pass --force to replace it")
    if out.is_dir():
        raise PrivsnnError(f"{out} is a directory; --target {target} writes a file")
    return _export_nir(args, art, graph, T, out) if target == "nir" else _export_onnx(args, art, graph, T, out)


def _manifest(kind: str, art, settings: dict, snn_path: str):
    from privatesnn.io_utils import sha256_file
    from privatesnn.manifest import Manifest, parent_entry

    return Manifest(kind=kind, command="export", settings=settings, inputs={"snn": sha256_file(snn_path)},
                    real_data_read=False, private=art.private, parents=[parent_entry(snn_path, "snn")])


def _export_nir(args: _Request, art, graph, T: int, out: Path) -> dict[str, Any]:
    import nir

    from privatesnn.exporters.nir_export import norse_check, write_nir

    write_nir(graph, out)
    norse = norse_check(graph, out, T)
    settings = {"target": "nir", "timesteps": T, "nir_version": getattr(nir, "__version__", "?"),
                "dt": graph.neurons()[0].dt if graph.neurons() else None,
                "round_trip_max_abs_param_diff": 0.0, "type_checked": True, "norse_check": norse}
    _manifest("nir", art, settings, args.snn).write_for(out)
    msg = ("Norse re-import: max |diff| {:.3g}".format(norse["max_abs_diff"]) if norse.get("ran")
           else f"Norse re-import skipped: {norse.get('reason')}")
    args.log(f"wrote {out} (NIR {settings['nir_version']}, {len(graph.nodes)} layers, T={T}); read back with type "
          f"checking: exact. {msg}")
    return {"target": "nir", "out": str(out), **settings}


def _export_onnx(args: _Request, art, graph, T: int, out: Path) -> dict[str, Any]:
    from privatesnn.exporters.onnx_export import export_onnx

    res = export_onnx(graph, out, T)
    settings = {"target": "onnx", "timesteps": T, **{k: v for k, v in res.items() if k != "path"}}
    _manifest("onnx", art, settings, args.snn).write_for(out)
    args.log(f"wrote {out} (ONNX opset {res['opset']}, one step with state; reference evaluator vs torch SNN over "
          f"T={T}: max |diff| {res['max_abs_diff']:.3g})")
    return {"target": "onnx", "out": str(out), **settings}


def _export_lava(args: _Request, art, graph, T: int, out: Path) -> dict[str, Any]:
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from privatesnn.exporters.netx import check_sequential, load_with_netx, write_netx
    from privatesnn.exporters.nir_export import write_nir
    from privatesnn.hw_targets.loihi import build_plan, check_fits, get_target, quantize_plan, resource_map

    from privatesnn.errors import PrivsnnError, UnsupportedLayerError
    from privatesnn.io_utils import sha256_file, write_json
    from privatesnn.lava_extra import INSTALL_HINT, lava_missing
    from privatesnn.manifest import read_manifest

    if args.chips < 1:
        raise PrivsnnError(f"--chips must be >= 1, got {args.chips}")
    if out.exists():
        if not out.is_dir():
            raise PrivsnnError(f"{out} exists and is not a directory")
        old = read_manifest(out) if (out / "manifest.json").exists() else None
        if any(out.iterdir()) and not ((old is not None and old.kind == "lava") or args.force):
            raise PrivsnnError(f"{out} is a non-empty directory that is not a privsnn lava export; "
                               f"choose another --out or pass --force")
    target = get_target(args.hw)
    plan = build_plan(graph, T, reset=args.reset)
    fixed = quantize_plan(plan)
    mapping = resource_map(plan, target, args.chips)
    check_fits(mapping)
    try:
        check_sequential(plan)
        sequential, why = True, None
    except UnsupportedLayerError as e:
        sequential, why = False, str(e)
    no_netx = lava_missing(need_dl=True)  # without the privsnn[lava] extra the netx file is written, not loaded
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_nir(graph, tmp / "model.nir")
        files = ["model.nir"]
        netx_info = {"written": False, "reason": why}
        if sequential:
            write_netx(fixed, tmp / "network.net")  # h5py only: no Lava needed
            netx_info = {"written": True, "file": "network.net", "reset_interval": plan.period,
                         "notes": "average pooling folded; weight exponents folded into vThMant/bias; "
                                  "v_init not representable (netx resets to 0)"}
            if no_netx is None:
                net = load_with_netx(tmp / "network.net", reset_interval=plan.period)
                netx_info.update(loaded_with="lava.lib.dl.netx.hdf5.Network",
                                 blocks=[type(b).__name__ for b in net.layers])
            else:
                netx_info.update(loaded_with=None, not_loaded=f"lava-dl: {no_netx}")
            files.append("network.net")
        resets = sorted({n.reset for n in graph.neurons()})
        fp = {"format": "privsnn-fixed-point/1", "timesteps": T, "period": plan.period, "reset_mode": args.reset,
              "snn_resets": resets, "layers": fixed.report(), "plan": plan.summary()}
        write_json(tmp / "fixed_point.json", fp)
        write_json(tmp / "mapping.json", mapping)
        files += ["fixed_point.json", "mapping.json"]
        settings = {"target": "lava", "timesteps": T, "hw": args.hw, "chips": args.chips, "reset_mode": args.reset,
                    "snn_resets": resets, "sequential": sequential, "netx": netx_info,
                    "period_steps": plan.period, "cores_needed": mapping["cores_needed"],
                    "fits_one_chip": mapping["fits_one_chip"],
                    "files": {f: sha256_file(tmp / f) for f in files}}
        _manifest("lava", art, settings, args.snn).write_for(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _print_mapping(mapping, args.log)
    worst = max(fixed.report(), key=lambda r: max([w["rel_l2_error"] for w in r["weights"]] or [0]))
    args.log(f"wrote {out}/ ({', '.join(files)}, manifest.json); "
          f"{_netx_note(sequential, why, no_netx)}; "
          f"largest weight quantisation error {max([w['rel_l2_error'] for w in worst['weights']] or [0]):.3%} "
          f"({worst['layer']}); {mapping['cores_needed']} {target.name} cores "
          f"({'fits one chip' if mapping['fits_one_chip'] else 'does not fit one chip'})")
    if sequential and no_netx is not None:
        args.log(f"note: network.net was written but not loaded in lava-dl netx ({no_netx}); {INSTALL_HINT} "
              f"to check it, and to run the export with `privsnn simulate`")
    if args.reset == "zero" and "subtract" in resets:
        args.log("note: the SNN resets by subtraction; Lava's LIF resets to zero: measure the difference with "
              "`privsnn simulate`")
    return {"target": "lava", "out": str(out), **settings,
            "quantization": [{"layer": r["layer"], "threshold_rel_error": r["threshold_rel_error"],
                              "bias_rel_error": r["bias_rel_error"],
                              "weight_rel_l2_error": [w["rel_l2_error"] for w in r["weights"]]}
                             for r in fixed.report()],
            "mapping": {k: mapping[k] for k in ("cores_needed", "cores_available", "fits_one_chip", "chips_needed")}}


def _netx_note(sequential: bool, why: str | None, no_netx: str | None) -> str:
    """What became of the netx file, for the one-line summary."""
    if not sequential:
        return f"no netx file: {why}"
    return "netx network.net loads in lava-dl netx" if no_netx is None else "netx network.net written (not loaded)"


def _print_mapping(mapping, log) -> None:
    t = mapping["target"]
    log(f"resource mapping on {t['label']} ({t['neurons_per_core']} neurons, {t['synapses_per_core']:,} "
        f"8-bit synapses per core; {t['cores_per_chip']} cores per chip):")
    log(f"  {'layer':32s} {'neurons':>9s} {'synapses':>12s} {'cores':>6s}")
    for r in mapping["layers"]:
        tag = " (host-fed)" if r["host_fed"] else ""
        log(f"  {r['layer'][:32]:32s} {r['neurons']:9d} {r['synapses']:12,d} {r['cores']:6d}{tag}")
    log(f"  total {mapping['cores_needed']} cores; fits one chip: {mapping['fits_one_chip']}")
    for a in mapping["advice"]:
        log(f"  - {a}")
