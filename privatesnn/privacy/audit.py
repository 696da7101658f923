"""The privacy audit: run the class-leakage attacks on every available model variant and report.

Variants (each gets the same metrics, seeds and settings):

* ``ann``: the source ANN (``--model``, or the spec recorded in the SNN's graph when loadable);
* ``converted_snn``: the plainly converted SNN (the attacked artifact itself, or the ``snn`` parent
  recorded in a trained artifact's manifest);
* ``encrypted_snn``: the SNN after temporal spike-based training (when the artifact is a trained one).

Per variant: its own real-data accuracy, attack scenario 1 (weights read as an ANN: accuracy on the
auditor's real test data, and model inversion of that ANN scored by an independent evaluator),
attack scenario 2 (model inversion directly through the SNN with surrogate gradients), and the
per-layer cosine between its weights and the ANN's. Outputs: ``privacy.json``, ``privacy.md`` and
PNG grids of the inverted images, in ``out_dir``. The verdict line is computed from the numbers.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import torch

from ..artifact import SNNArtifact, check_same_model, load_snn
from ..data import load_data
from ..errors import PrivsnnError
from ..evaluation import accuracy, check_classes
from ..io_utils import relative_path
from ..io_utils import atomic_path, sha256_file, write_json
from .inversion import OBJECTIVES, InversionSettings, clustered_se, invert, save_grid, score_inversion, snn_for_inversion
from .weights_as_ann import RebuiltANN, check_architecture, reference_graph, weight_cosine, weights_as_ann

FORMAT = "privsnn-privacy/1"
# Goals from the project's issue: how close to chance an encrypted SNN's leak must be.
GOAL_WEIGHTS_AS_ANN = 0.05  # weights-as-ANN accuracy <= chance + 5 points
GOAL_INVERSION = 0.10  # inversion attack accuracy <= chance + 10 points
MAX_ACCURACY_DROP = 0.02  # a defence counts only within 2 points of the ANN's accuracy
# Accuracies are float32 means of k / n: an attack at exactly a bar (16 of 80 images = 20%) reads 0.2000000030,
# so every bar is compared with this much slack (far below 1 / n for any n the audit uses).
ROUNDING = 1e-6
ATTACK_CONVERGED = 0.75  # an attack counts as run to its end when the attacked model puts >= 75% of its images in their target class
DEFAULT_EVALUATORS = {"digits": "digits-evaluator"}
VARIANT_LABELS = {"ann": "ANN", "converted_snn": "converted SNN", "encrypted_snn": "encrypted SNN"}


class EvaluatorError(PrivsnnError):
    """The evaluator cannot score the attack: wrong number of classes, input shape, or it is the victim."""


def _is_trained(artifact: SNNArtifact) -> bool:
    m = artifact.manifest
    if m is not None:
        return m.kind == "private-snn" or m.command == "train"
    return "epochs" in artifact.settings


def num_classes_of(artifact: SNNArtifact) -> int:
    """The SNN's number of classes (recorded, else its output layer's size)."""
    n = artifact.graph.meta.get("num_classes")
    return int(n) if n else int(artifact.graph[artifact.graph.output].shape[0])


def _load_ann(artifact: SNNArtifact, model_spec: str | None, notes: list[str], model_kwargs: dict | None):
    """The victim ANN: ``--model`` (must match, else error) or the recorded spec (skipped with a note)."""
    from ..models import load_model

    rec = artifact.model
    kw = {"num_classes": rec.get("num_classes"), "mean": rec.get("mean"), "std": rec.get("std")}
    kw.update({k: v for k, v in (model_kwargs or {}).items() if v is not None})
    if model_spec:
        loaded = load_model(model_spec, **kw)
        check_same_model(artifact, loaded)
        return loaded
    spec = rec.get("spec")
    if not spec:
        notes.append("no ANN variant: the SNN records no source model and --model was not given")
        return None
    try:
        loaded = load_model(spec, **kw)
    except PrivsnnError as e:
        notes.append(f"no ANN variant: the recorded model {spec!r} is not loadable here ({e}); pass --model")
        return None
    if rec.get("sha256") and loaded.sha256 != rec["sha256"]:
        notes.append(f"no ANN variant: the recorded model {spec!r} has changed since conversion (sha256 differs)")
        return None
    return loaded


def _load_parent(artifact: SNNArtifact, notes: list[str]) -> SNNArtifact | None:
    """The converted SNN a trained artifact came from (manifest ``parents``, role ``snn``)."""
    m = artifact.manifest
    entry = next((p for p in (m.parents if m else []) if isinstance(p, dict) and p.get("role") == "snn"), None)
    if entry is None or not entry.get("path"):
        notes.append("no converted-SNN variant: the artifact's manifest names no `snn` parent")
        return None
    path = Path(entry["path"])
    if not path.is_absolute() and artifact.path is not None and not path.exists():
        path = artifact.path.parent / path.name
    if not path.is_file():
        notes.append(f"no converted-SNN variant: parent {entry['path']} not found")
        return None
    if entry.get("sha256") and sha256_file(path) != entry["sha256"]:
        notes.append(f"no converted-SNN variant: parent {path} changed since training (sha256 differs)")
        return None
    return load_snn(path)


def load_evaluator(evaluator_spec: str | None, data_spec: str, num_classes: int, input_shape, victim_sha: str | None):
    """The independent evaluator that scores inverted images (``--evaluator``, else the default for the
    dataset), checked against the victim: same classes and input shape, not the victim itself."""
    from ..models import load_model

    spec = evaluator_spec or DEFAULT_EVALUATORS.get(str(data_spec).lower())
    if not spec:
        raise EvaluatorError(f"--evaluator SPEC is required for --data {data_spec}: an independent classifier of "
                             f"another architecture than the victim (see docs/privacy.md)")
    ev = load_model(spec)
    if ev.num_classes != num_classes:
        raise EvaluatorError(f"evaluator {spec} has {ev.num_classes} classes but the SNN has {num_classes}")
    if tuple(ev.input_shape) != tuple(input_shape):
        raise EvaluatorError(f"evaluator {spec} takes inputs {tuple(ev.input_shape)} but the SNN takes {tuple(input_shape)}")
    if victim_sha and ev.sha256 == victim_sha:
        raise EvaluatorError(f"evaluator {spec} is the victim model itself; use an independent classifier")
    return ev


def _se(p: float | None, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / max(n, 1)) if p is not None else 0.0


def _significantly_lower(new: float | None, ref: float | None, se_new: float, se_ref: float, min_drop: float) -> bool:
    """``new`` is lower than ``ref`` by more than ``min_drop`` and by more than 2 standard errors."""
    if new is None or ref is None:
        return False
    drop = ref - new
    return drop > min_drop and drop > 2 * math.hypot(se_new, se_ref)


def _inv_se(entry: dict, key: str, n_inv: int) -> float:
    return clustered_se(entry.get(f"{key}_per_class"), entry[key], n_inv) if entry.get(key) is not None else 0.0


def verdict(report: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The computed verdict for the attacked artifact and the goal checks behind it."""
    chance = report["chance"]
    var = report["variant"]
    v = report["variants"][var]
    ann = report["variants"].get("ann")
    n_test, n_inv = report["n_test"], report["n_inverted"]
    wa, inv, sinv = v["weights_as_ann_accuracy"], v["inversion_accuracy"], v["snn_inversion_accuracy"]
    goals = {
        "weights_as_ann": wa <= chance + GOAL_WEIGHTS_AS_ANN + ROUNDING,
        "inversion": inv <= chance + GOAL_INVERSION + ROUNDING,
        "snn_inversion": sinv is None or sinv <= chance + GOAL_INVERSION + ROUNDING,
    }
    acc_drop = None if ann is None else ann["accuracy"] - v["accuracy"]
    goals["accuracy_drop_points"] = None if acc_drop is None else round(100 * acc_drop, 2)
    leak = (f"weights-as-ANN {100 * wa:.1f}%, inversion {100 * inv:.1f}%"
            + (f", SNN inversion {100 * sinv:.1f}%" if sinv is not None else "") + f" (chance {100 * chance:.1f}%)")
    cost = "" if acc_drop is None else f"; accuracy {100 * v['accuracy']:.1f}% vs ANN {100 * ann['accuracy']:.1f}%"
    if var != "encrypted_snn":
        ref = ann
        same = ref is not None and not _significantly_lower(wa, ref["accuracy"], _se(wa, n_test),
                                                            _se(ref["accuracy"], n_test), 0.05)
        word = "leaks like the ANN" if same else ("leaks" if ref is None else "leaks less than the ANN")
        return f"NOT PRIVATE: the plainly converted SNN {word}: {leak}{cost}", goals
    ref = report["variants"].get("converted_snn") or ann
    if v["accuracy"] <= chance + GOAL_WEIGHTS_AS_ANN:
        return (f"USELESS: the encrypted SNN itself is near chance (accuracy {100 * v['accuracy']:.1f}%); "
                f"nothing leaks because nothing was kept: {leak}{cost}"), goals
    if all(goals[k] for k in ("weights_as_ann", "inversion", "snn_inversion")):
        return f"PRIVATE (goal met): the leak is reduced to near chance: {leak}{cost}", goals
    bars = (report.get("threat_models") or {}).get(var, {}).get("bars_met") or {}
    goals["attacker_bars"] = bool(bars) and all(bars.values())
    if goals["attacker_bars"] and acc_drop is not None and acc_drop <= MAX_ACCURACY_DROP + ROUNDING:
        attackers = ", ".join(f"({k})" for k in sorted(bars))
        return (f"INVERSION-RESISTANT: every attacker measured ({attackers}) meets its bar within "
                f"{100 * MAX_ACCURACY_DROP:.0f} points of the ANN's accuracy, but the weights still compute the "
                f"classifier: {leak}{cost}"), goals
    reduced = ref is not None and (
        _significantly_lower(wa, ref["weights_as_ann_accuracy"], _se(wa, n_test),
                             _se(ref["weights_as_ann_accuracy"], n_test), GOAL_WEIGHTS_AS_ANN)
        or _significantly_lower(inv, ref["inversion_accuracy"], _inv_se(v, "inversion_accuracy", n_inv),
                                _inv_se(ref, "inversion_accuracy", n_inv), GOAL_INVERSION)
        or (sinv is not None and ref.get("snn_inversion_accuracy") is not None
            and _significantly_lower(sinv, ref["snn_inversion_accuracy"], _inv_se(v, "snn_inversion_accuracy", n_inv),
                                     _inv_se(ref, "snn_inversion_accuracy", n_inv), GOAL_INVERSION)))
    base = "" if ref is None else f" vs the {VARIANT_LABELS.get(_variant_name(report, ref), 'reference')}"
    if reduced:
        return f"LEAK REDUCED{base}, but not to chance (goal not met): {leak}{cost}", goals
    if ref is None:
        return f"LEAK NOT REDUCED to chance (goal not met; no reference variant to compare): {leak}{cost}", goals
    return f"LEAK NOT REDUCED{base} (no significant change): {leak}{cost}", goals


def _variant_name(report: dict, entry: dict) -> str:
    return next((k for k, e in report["variants"].items() if e is entry), "")


def run_audit(snn_path: str | Path, model_spec: str | None, data_spec: str, out_dir: str | Path,
              evaluator_spec: str | None = None, limit_classes: int | None = None, iterations: int | None = None,
              seed: int = 0, *, per_class: int | None = None, timesteps: int | None = None, limit: int | None = None,
              inversion: InversionSettings | None = None, snn_inversion: bool = True,
              model_kwargs: dict | None = None, device: torch.device | str = "cpu", progress: bool = True,
              json_path: str | Path | None = None, log=print, prior_data: str | None = "auto",
              relu_inversion: bool = True, objectives: Sequence[str] | None = None,
              distil: str = "auto") -> dict[str, Any]:
    """Audit ``snn_path`` (see module docstring); writes ``out_dir/privacy.{json,md}`` and PNGs and
    returns the report. ``limit_classes``/``iterations``/``per_class`` shrink the inversion attacks;
    ``limit`` uses only the first N real test images for the accuracies. ``objectives`` (default: the
    inversion settings' one): every attack runs once per objective ("logit", "ce") and the strongest
    run counts: converged before not, then the evaluator's accuracy (an upper bound on the attacker,
    like the best weights-as-ANN reading). ``distil`` (attacker (c)): "auto" inverts a ReLU surrogate
    distilled from the SNN's outputs (:mod:`.distilled`) where the ascent through the SNN does not
    reach its class, "always" also where it does (the stronger run counts), "off" never."""
    t0 = time.time()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise PrivsnnError(f"--out {out_dir} exists and is not a directory")
    for name, val in (("--limit-classes", limit_classes), ("--iterations", iterations), ("--per-class", per_class),
                      ("--timesteps", timesteps), ("--limit", limit)):
        if val is not None and val <= 0:
            raise PrivsnnError(f"{name} must be > 0, got {val}")
    if distil not in DISTIL_MODES:
        raise PrivsnnError(f"--distil: {distil!r} is not one of {', '.join(DISTIL_MODES)}")
    for o in objectives or ():
        if o not in OBJECTIVES:
            raise PrivsnnError(f"--objectives: {o!r} is not one of {', '.join(OBJECTIVES)}")
    notes: list[str] = []
    artifact = load_snn(snn_path)
    graph = artifact.graph
    num_classes = num_classes_of(artifact)
    input_shape = tuple(graph.input.shape)
    loaded = _load_ann(artifact, model_spec, notes, model_kwargs)
    ann_g = None
    if loaded is not None:
        from ..conversion import ann_graph

        ann_g = reference_graph(ann_graph(loaded), graph)
        check_architecture(graph, ann_g, f"the SNN {snn_path}")
    evaluator = load_evaluator(evaluator_spec, data_spec, num_classes, input_shape,
                                loaded.sha256 if loaded is not None else artifact.model.get("sha256"))
    data = load_data(data_spec).limit(limit)
    check_classes(data, num_classes, "the SNN")
    ev_module = evaluator.module().to(device)
    for p in ev_module.parameters():
        p.requires_grad_(False)
    ev_acc = accuracy(ev_module, data, evaluator.num_classes, 256, device, desc="evaluator")
    chance = 1.0 / num_classes
    if ev_acc < 2 * chance:
        notes.append(f"the evaluator is weak ({100 * ev_acc:.1f}% on real data): inversion accuracies understate leakage")

    inv = inversion or InversionSettings()
    inv = InversionSettings(**{**inv.to_dict(), "seed": seed,
                               **({"iterations": iterations} if iterations else {}),
                               **({"per_class": per_class} if per_class else {})})
    classes = list(range(num_classes))[:limit_classes] if limit_classes else list(range(num_classes))
    objectives = tuple(objectives or (inv.objective,))

    prior = _attacker_prior(prior_data, data_spec, classes, num_classes, input_shape, seed, notes, progress, log)

    trained = _is_trained(artifact)
    variants: list[tuple[str, Any]] = []
    if loaded is not None:
        variants.append(("ann", loaded))
    if trained:
        parent = _load_parent(artifact, notes)
        if parent is not None:
            check_architecture(parent.graph, graph, f"the parent SNN {parent.path}")
            variants.append(("converted_snn", parent))
        variants.append(("encrypted_snn", artifact))
    else:
        variants.append(("converted_snn", artifact))
    attacked = variants[-1][0]

    def strength(s: dict[str, Any]) -> tuple[bool, float]:  # converged runs first, then the evaluator's score
        return s["self"] >= ATTACK_CONVERGED, s["evaluator"]

    def run_objectives(model, attacked_classes: list[int], desc: str, reseed: bool, victim=None,
                       **kwargs) -> dict[str, Any]:
        """Invert ``model`` once per objective, score each run (``self``: on ``victim``, default the
        inverted model) and keep the strongest."""
        runs = {}
        for o in objectives:
            imgs, labs = invert(model, attacked_classes, input_shape, replace(inv, objective=o), device,
                                desc=desc + (f" [{o}]" if len(objectives) > 1 else ""), progress=progress, **kwargs)
            if reseed:  # a rate-coded SNN draws its input spikes from the global generator
                torch.manual_seed(seed)
            runs[o] = {**score_inversion(ev_module, model if victim is None else victim, imgs, labs, device), "images": (imgs, labs)}
        best = max(runs, key=lambda o: strength(runs[o]))
        return {**runs[best], "objective": best,
                "by_objective": {o: {"evaluator": r["evaluator"], "self": r["self"]} for o, r in runs.items()}}

    def attack(models, kind: str, name: str, attacked_classes: list[int], desc: str, reseed: bool = False,
               try_all: bool = False, **kwargs) -> dict[str, Any]:
        """``models``: the attacked model, or ``{reading: model}`` in the attacker's order of preference: the
        next reading is tried only while no run has reached its class (every one with ``try_all``); a
        :class:`Later` value is built only when tried. Saves the strongest run's PNG grid."""
        tried = {}
        for reading, model in (models.items() if isinstance(models, dict) else [(None, models)]):
            if isinstance(model, Later):
                model = model.build()
            tried[reading] = run_objectives(model, attacked_classes, desc + (f" ({reading})" if reading else ""),
                                            reseed, **kwargs)
            if tried[reading]["self"] >= ATTACK_CONVERGED and not try_all:
                break
        reading = max(tried, key=lambda r: strength(tried[r]))
        s = tried[reading]
        imgs, labs = s.pop("images")
        png = out_dir / f"{name}_{kind}.png"
        title = (f"{VARIANT_LABELS[name]}: {THREAT_TITLES[kind]}"
                 f" - evaluator accuracy {100 * s['evaluator']:.0f}% (chance {100 * chance:.0f}%)")
        save_grid(png, imgs, labs, title, per_class=min(inv.per_class, 10))
        out = {**s, "png": png.name}
        if reading is not None:
            out["reading"], out["readings_tried"] = reading, {r: {"evaluator": t["evaluator"], "self": t["self"]}
                                                              for r, t in tried.items()}
        return out

    def record(entry: dict[str, Any], kind: str, s: dict[str, Any]) -> None:
        entry[f"{kind}_objective"], entry[f"{kind}_by_objective"] = s["objective"], s["by_objective"]
        if "reading" in s:
            entry[f"{kind}_reading"], entry[f"{kind}_readings_tried"] = s["reading"], s["readings_tried"]

    results: dict[str, dict[str, Any]] = {}
    for name, obj in variants:
        log(f"[audit] {VARIANT_LABELS[name]}: accuracy, weights-as-ANN, inversion ...")
        entry: dict[str, Any] = {}
        if name == "ann":
            module = obj.module().to(device)
            for p in module.parameters():
                p.requires_grad_(False)
            acc = accuracy(module, data, obj.num_classes, 256, device)
            entry.update(source=obj.spec, accuracy=acc, weights_as_ann_accuracy=acc, weights_as_ann_mode="identity",
                         weights_as_ann_modes={"identity": acc}, timesteps=None)
            entry["weight_cosine"] = {n.name: 1.0 for n in ann_g.weighted() if getattr(n, "trainable", True)}
            attack_model = module
        else:
            from ..snn_eval import snn_accuracy_over_time

            T = int(timesteps or obj.timesteps)
            accs, _ = snn_accuracy_over_time(obj, data, [T], 100, device, seed, desc=VARIANT_LABELS[name])
            wa = weights_as_ann(obj.graph, data, num_classes, device, timesteps=T)
            entry.update(source=relative_path(obj.path, out_dir), accuracy=accs[T], timesteps=T, weights_as_ann_accuracy=wa["accuracy"],
                         weights_as_ann_mode=wa["mode"], weights_as_ann_modes=wa["modes"])
            entry["weight_cosine"] = weight_cosine(obj.graph, ann_g) if ann_g is not None else None
            attack_model = RebuiltANN(obj.graph, wa["mode"], T).to(device).eval()
            # (b), (d): the best reading first; where its inversions do not reach their class the attacker
            # moves on to the next most accurate reading (the plain ReLU one is attacker (a)'s)
            order = sorted((m for m in wa["modes"] if m not in (wa["mode"], "relu")), key=lambda m: -wa["modes"][m])
            readings = {wa["mode"]: attack_model,
                        **{m: RebuiltANN(obj.graph, m, T).to(device).eval() for m in order}}
        if entry["weight_cosine"]:
            entry["weight_cosine_mean"] = sum(entry["weight_cosine"].values()) / len(entry["weight_cosine"])
        s1 = attack(module if name == "ann" else readings, "inversion", name, classes,
                    f"inversion: {VARIANT_LABELS[name]}")
        record(entry, "inversion", s1)
        entry.update(inversion_accuracy=s1["evaluator"], inversion_accuracy_se=s1["se"],
                     inversion_accuracy_per_class=s1["per_class"], inversion_self_accuracy=s1["self"],
                     inversion_png=s1["png"])
        # threat model (a): the paper's attacker reads the weights into the plain ReLU ANN as they are
        if name == "ann" or (entry["weights_as_ann_mode"] == "relu" and s1.get("reading") in (None, "relu")) \
                or not relu_inversion:
            same_attack = name == "ann" or relu_inversion
            if same_attack:  # (a) is (b)'s run: the same objective counted
                entry["relu_inversion_objective"] = s1["objective"]
                entry["relu_inversion_by_objective"] = s1["by_objective"]
            entry.update(relu_inversion_accuracy=s1["evaluator"] if same_attack else None,
                         relu_inversion_accuracy_se=s1["se"] if same_attack else None,
                         relu_inversion_self_accuracy=s1["self"] if same_attack else None, relu_inversion_png=None)
        else:
            relu_model = RebuiltANN(obj.graph, "relu", entry["timesteps"]).to(device).eval()
            sa = attack(relu_model, "relu_inversion", name, classes, f"ReLU-reading inversion: {VARIANT_LABELS[name]}")
            record(entry, "relu_inversion", sa)
            entry.update(relu_inversion_accuracy=sa["evaluator"], relu_inversion_accuracy_se=sa["se"],
                         relu_inversion_self_accuracy=sa["self"], relu_inversion_png=sa["png"])
        # threat model (d): the rescaled reading inverted with an image prior from public images
        entry.update(prior_inversion_accuracy=None, prior_inversion_accuracy_se=None, prior_inversion_png=None,
                     prior_inversion_self_accuracy=None, inversion_accuracy_on_prior_classes=None)
        if prior is not None:
            sd = attack(module if name == "ann" else readings, "prior_inversion", name, prior["classes"],
                        f"prior-aided inversion: {VARIANT_LABELS[name]}", init=prior["images"],
                        regulariser=prior["regulariser"])
            record(entry, "prior_inversion", sd)
            entry.update(prior_inversion_accuracy=sd["evaluator"], prior_inversion_accuracy_se=sd["se"],
                         prior_inversion_png=sd["png"], prior_inversion_accuracy_per_class=sd["per_class"],
                         prior_inversion_self_accuracy=sd["self"])
            same = [s1["per_class"][c] for c in prior["classes"] if c in s1["per_class"]]
            entry["inversion_accuracy_on_prior_classes"] = sum(same) / len(same) if same else None
        entry.update(snn_inversion_accuracy=None, snn_inversion_accuracy_se=None, snn_inversion_accuracy_per_class=None,
                     snn_inversion_self_accuracy=None, snn_inversion_png=None)
        if name != "ann" and snn_inversion:
            T = int(inv.timesteps or entry["timesteps"])
            entry["snn_inversion_timesteps"] = T
            net = snn_for_inversion(obj.graph, T, inv.snn_surrogate_alpha).to(device)
            routes: Any = net
            if distil != "off":  # where the SNN's own gradients stall, surrogates distilled from its outputs
                snn_on_real: dict[str, torch.Tensor] = {}  # the SNN's predictions on real images, once per variant
                routes = {"surrogate gradients": net,
                          **{route: Later(partial(_distilled, net, obj.graph, entry, T, prior, data, classes, inv,
                                                  route, device, seed, progress, log, snn_on_real))
                             for route in DISTIL_ROUTES}}
            s2 = attack(routes, "snn_inversion", name, classes, f"SNN inversion: {VARIANT_LABELS[name]} (T={T})",
                        reseed=True, victim=net, try_all=distil == "always")
            record(entry, "snn_inversion", s2)
            entry.update(snn_inversion_accuracy=s2["evaluator"], snn_inversion_accuracy_se=s2["se"],
                         snn_inversion_accuracy_per_class=s2["per_class"], snn_inversion_self_accuracy=s2["self"],
                         snn_inversion_png=s2["png"])
        results[name] = entry
        log(f"[audit] {VARIANT_LABELS[name]}: accuracy {100 * entry['accuracy']:.1f}%, weights-as-ANN "
            f"{100 * entry['weights_as_ann_accuracy']:.1f}% ({entry['weights_as_ann_mode']}), inversion "
            f"{100 * entry['inversion_accuracy']:.1f}%"
            + (f", SNN inversion {100 * entry['snn_inversion_accuracy']:.1f}%"
               if entry["snn_inversion_accuracy"] is not None else ""))

    top = results[attacked]
    report: dict[str, Any] = {
        "format": FORMAT, "snn": relative_path(snn_path, out_dir), "variant": attacked,
        "accuracy": top["accuracy"],
        "ann_accuracy": results["ann"]["accuracy"] if "ann" in results else None,
        "weights_as_ann_accuracy": top["weights_as_ann_accuracy"], "weights_as_ann_mode": top["weights_as_ann_mode"],
        # the paper's scenario 1 taken literally (plain ReLU reading); the key above is the strongest reading
        "weights_as_ann_relu_accuracy": top["weights_as_ann_modes"].get("relu", top["weights_as_ann_accuracy"]),
        "inversion_accuracy": top["inversion_accuracy"], "snn_inversion_accuracy": top["snn_inversion_accuracy"],
        "chance": chance, "weight_cosine": top["weight_cosine"],
        "variants": results,
        "data": str(data_spec), "n_test": len(data), "num_classes": num_classes, "classes": classes,
        "n_inverted": len(classes) * inv.per_class,
        "model": loaded.spec if loaded is not None else None,
        "evaluator": {"spec": evaluator.spec, "arch": evaluator.arch, "sha256": evaluator.sha256, "accuracy": ev_acc},
        "inversion_settings": inv.to_dict(), "objectives": list(objectives), "distil": distil, "seed": seed,
        "notes": notes,
        "prior": None if prior is None else {k: v for k, v in prior.items() if k not in ("images", "regulariser")},
    }
    report["threat_models"] = threat_models(report)
    report["verdict"], report["goals"] = verdict(report)
    report["seconds"] = round(time.time() - t0, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "privacy.json", report)
    write_markdown(out_dir / "privacy.md", report)
    if json_path:
        write_json(json_path, report)
    return report


DISTIL_MODES = ("auto", "always", "off")
# attacker (c)'s surrogate routes, tried in this order after the ascent through the SNN itself
DISTIL_ROUTES = ("distilled from its weights", "distilled from scratch")


class Later:
    """A model built only when an attack gets to it (e.g. a surrogate that takes a distillation)."""

    def __init__(self, build):
        self.build = build


def _distilled(net, graph, entry: dict[str, Any], timesteps: int, prior: dict[str, Any] | None, data,
               classes: list[int], inv: InversionSettings, route: str, device, seed: int, progress: bool,
               log, snn_on_real: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Attacker (c)'s surrogate of the SNN ``net`` (:func:`.distilled.distil_surrogate`) for ``route``
    (:data:`DISTIL_ROUTES`: started from the variant's best weights-as-ANN reading, 900 Adam steps, or
    from its architecture only, 3000 steps), fitted on the attacker's public images (when the audit
    has them) and noise, then on its own CE inversions queried on the SNN (2 more rounds). Its record,
    with the auditor's fidelity on up to 500 real test images (the SNN's predictions on them cached in
    ``snn_on_real``), goes to ``entry["snn_inversion_distilled"][route]``."""
    from ..evaluation import predict
    from .distilled import distil_surrogate

    public = prior["images"] if prior is not None else None
    log(f"[audit] (c), {route}: fitting a ReLU surrogate to the SNN's outputs on "
        f"{'public images, ' if public is not None else ''}noise and its own inversions")
    rounds = itertools.count(1)

    def explore(surrogate):  # fresh seeds per round: images the final attack does not start from
        return invert(surrogate, classes, tuple(graph.input.shape),
                      replace(inv, objective="ce", seed=seed + 7919 * next(rounds)), device,
                      desc=f"(c) {route}: exploring", progress=progress)[0]

    scratch = route == "distilled from scratch"
    # from scratch the SNN's thresholds mean nothing and the rate reading's clamp at 1 saturates random
    # weights (a fit that never left chance): the architecture as a plain ReLU network
    mode = "relu" if scratch else entry["weights_as_ann_mode"]
    surrogate, rec = distil_surrogate(net, graph, mode, timesteps, public, device,
                                      steps=3000 if scratch else 900, lr=3e-3 if scratch else 1e-3, seed=seed,
                                      progress=progress, scratch=scratch, rounds=3, explore=explore)
    real = data.x[:500]
    if "preds" not in snn_on_real:
        torch.manual_seed(seed)  # a rate-coded SNN draws its input spikes from the global generator
        snn_on_real["preds"] = predict(net, real, 100, device=device, progress=False)
    rec["fidelity_real"] = float((predict(surrogate, real, 100, device=device, progress=False)
                                  == snn_on_real["preds"]).float().mean())
    rec["public_data"] = prior["data"] if prior is not None else None
    entry.setdefault("snn_inversion_distilled", {})[route] = rec
    return surrogate


THREAT_TITLES = {
    "relu_inversion": "(a) inversion of the weights read as a plain ReLU ANN",
    "inversion": "(b) inversion of the rescaled ANN reading",
    "snn_inversion": "(c) inversion through the SNN (surrogate gradients)",
    "prior_inversion": "(d) inversion with a prior from public images",
}
THREAT_KEYS = {"a": "relu_inversion_accuracy", "b": "inversion_accuracy", "c": "snn_inversion_accuracy",
               "d": "prior_inversion_accuracy"}


def _attacker_prior(prior_data: str | None, data_spec: str, classes: list[int], num_classes: int, input_shape,
                    seed: int, notes: list[str], progress: bool, log) -> dict[str, Any] | None:
    """Threat model (d)'s auxiliary public data and the image prior learnt from it.

    The attacker holds real images of the classes it does *not* attack: the upper half of the
    classes are "public", and (d) inverts the attacked classes in the lower half. ``prior_data``:
    a data spec; "auto" takes ``digits-train`` for ``--data digits`` and skips (d) otherwise."""
    if prior_data == "auto":
        prior_data = "digits-train" if str(data_spec).lower() == "digits" else None
    if not prior_data:
        notes.append("threat model (d) skipped: no auxiliary public data (pass --prior-data SPEC)")
        return None
    from .prior import train_prior

    public = list(range(num_classes // 2, num_classes))
    private = [c for c in classes if c < num_classes // 2]
    pub = load_data(prior_data)
    keep = torch.isin(pub.y, torch.tensor(public))
    images = pub.x[keep]
    if tuple(images.shape[1:]) != tuple(input_shape) or len(images) == 0 or not private:
        notes.append(f"threat model (d) skipped: {prior_data} has no usable images of classes {public[0]}-{public[-1]} "
                     f"of shape {tuple(input_shape)}, or no attacked class below {num_classes // 2}")
        return None
    images = images[:4000]
    log(f"[audit] threat model (d): image prior from {len(images)} public images of classes {public[0]}-{public[-1]} "
        f"({prior_data}); attacking classes {private[0]}-{private[-1]}")
    vae = train_prior(images, seed=seed, progress=progress).to("cpu")
    for p in vae.parameters():
        p.requires_grad_(False)
    pixels = float(torch.tensor(input_shape).prod())

    def regulariser(x: torch.Tensor) -> torch.Tensor:  # the prior's negative ELBO per pixel, weight 0.1
        recon, mu, logvar = vae.to(x.device)(x.clamp(0, 1))
        rec = torch.nn.functional.binary_cross_entropy(recon, x.clamp(0, 1), reduction="sum") / len(x)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / len(x)
        return 0.1 * (rec + kl) / pixels

    return {"data": str(prior_data), "public_classes": public, "classes": private, "images": images,
            "n_public_images": len(images), "regulariser": regulariser,
            "method": "pixel inversion started from public images, with a VAE prior learnt from them "
                      "(negative ELBO, weight 0.1) as an extra penalty"}


def threat_models(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per variant, the four attackers side by side: attack accuracy +- its standard error, and for
    an encrypted SNN whether it meets the issue's bars ((a), (b) <= chance + 10 points; (c), (d) at
    most half their success against the unencrypted converted SNN)."""
    out: dict[str, dict[str, Any]] = {}
    chance = report["chance"]
    conv = report["variants"].get("converted_snn")
    for name, e in report["variants"].items():
        row: dict[str, Any] = {}
        for tm, key in THREAT_KEYS.items():
            v = e.get(key)
            row[tm] = None if v is None else {"accuracy": v, "se": e.get(f"{key}_se"),
                                              "self": e.get(key.replace("_accuracy", "_self_accuracy"))}
        if name == "encrypted_snn":
            bars = {}
            for tm in ("a", "b"):
                if row[tm] is not None:
                    bars[tm] = row[tm]["accuracy"] <= chance + GOAL_INVERSION + ROUNDING
            for tm in ("c", "d"):
                ref = None if conv is None else conv.get(THREAT_KEYS[tm])
                if row[tm] is not None and ref is not None:
                    bars[tm] = row[tm]["accuracy"] <= 0.5 * ref + ROUNDING
            # an attack that did not reach its own goal on the attacked model failed at optimisation (e.g.
            # masked gradients), which a stronger optimiser may undo: its low score does not count as a defence
            # (flagged with or without a reference to compare against)
            failed = [tm for tm in THREAT_KEYS if row[tm] is not None and row[tm].get("self") is not None
                      and row[tm]["self"] < ATTACK_CONVERGED]
            for tm in failed:
                if tm in bars:
                    bars[tm] = False
            row["bars_met"] = bars
            row["not_converged"] = failed
        out[name] = row
    return out


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _pm(entry: dict, key: str) -> str:
    """``63.3% ± 8.1`` (the clustered standard error, in points)."""
    se = entry.get(f"{key}_se")
    return _pct(entry.get(key)) + ("" if se is None else f" ± {100 * se:.1f}")


def write_markdown(path: str | Path, r: dict[str, Any]) -> Path:
    """The short human summary of a report."""
    lines = [f"# Privacy audit of `{Path(r['snn']).name}`", "",
             f"**Verdict: {r['verdict']}**", "",
             f"Real test data `{r['data']}` (n={r['n_test']}) used only to score; evaluator `{r['evaluator']['spec']}` "
             f"({r['evaluator']['arch']}, {_pct(r['evaluator']['accuracy'])} on the real data); chance "
             f"{_pct(r['chance'])}; {r['n_inverted']} inverted images per attack "
             f"({len(r['classes'])} classes x {r['inversion_settings']['per_class']}, "
             f"{r['inversion_settings']['iterations']} iterations, seed {r['seed']}"
             + (f"; every attack with the objectives {', '.join(r['objectives'])}, the strongest run counted"
                if len(r.get("objectives") or []) > 1 else "") + ").", "",
             "Inversion accuracies are given ± their standard error (classes as clusters).", "",
             "| variant | accuracy | weights-as-ANN acc., best reading (mode) | plain ReLU reading | inversion acc. (scenario 1) | SNN inversion acc. (scenario 2) | mean weight cosine |",
             "|---|---|---|---|---|---|---|"]
    for name, e in r["variants"].items():
        cos = e.get("weight_cosine_mean")
        t = f" (T={e['timesteps']})" if e.get("timesteps") else ""
        relu = e["weights_as_ann_modes"].get("relu", e["weights_as_ann_accuracy"])
        lines.append(f"| {VARIANT_LABELS[name]} | {_pct(e['accuracy'])}{t} | {_pct(e['weights_as_ann_accuracy'])} "
                     f"({e['weights_as_ann_mode']}) | {_pct(relu)} | {_pm(e, 'inversion_accuracy')} | {_pm(e, 'snn_inversion_accuracy')} "
                     f"| {'n/a' if cos is None else f'{cos:.4f}'} |")
    tms = r.get("threat_models")
    if tms:
        lines += ["", "Threat models side by side (attack accuracy of the inverted images under the independent "
                      "evaluator, ± standard error; (d) on the lower half of the classes, with a prior from public "
                      "images of the upper half):", "",
                  "| variant | (a) paper: ReLU reading | (b) rescaling-aware | (c) through the SNN | (d) prior from public data |",
                  "|---|---|---|---|---|"]
        for name, row in tms.items():
            cells = [("n/a" if row[t] is None else _pct(row[t]["accuracy"]) + (
                "" if row[t]["se"] is None else f" ± {100 * row[t]['se']:.1f}") + (
                "" if row[t].get("self") is None else f" [{_pct(row[t]['self'])}]")) for t in "abcd"]
            lines.append(f"| {VARIANT_LABELS[name]} | " + " | ".join(cells) + " |")
        lines += ["", "In brackets: the share of the inverted images that the attacked model itself puts in their "
                      f"target class (the attack reached its goal; below {100 * ATTACK_CONVERGED:.0f}% an attacker's low "
                      "score does not count towards a bar: the optimisation failed, which a stronger optimiser may undo)."]
        enc = tms.get("encrypted_snn", {})
        bars = enc.get("bars_met")
        if bars:
            lines += ["", "Bars for the encrypted SNN ((a), (b) <= chance + 10 points; (c), (d) <= half of the converted "
                          "SNN's): " + ", ".join(f"({k}) {'met' if v else 'not met'}" for k, v in bars.items()) + "."
                      + (f" Not converged: {', '.join(f'({k})' for k in enc.get('not_converged'))}."
                         if enc.get("not_converged") else "")]
    for name, e in r["variants"].items():
        for route, d in (e.get("snn_inversion_distilled") or {}).items():
            run = (e.get("snn_inversion_readings_tried") or {}).get(route, {})
            lines += ["", f"(c) on the {VARIANT_LABELS[name]}, {route} ({d['n_queries']} queries: "
                          f"{', '.join(f'{v} {k}' for k, v in d['queries'].items())}; start: {d['start']}, "
                          f"{d['rounds']} rounds): agrees with the SNN on {_pct(d['fidelity'])} of held-out queries and "
                          f"{_pct(d['fidelity_real'])} of real test images; its inversions: evaluator "
                          f"{_pct(run.get('evaluator'))}, the SNN puts {_pct(run.get('self'))} in their class. "
                          f"Run counted for (c): {e.get('snn_inversion_reading')}."]
    g = r["goals"]
    lines += ["", f"Goals for an encrypted SNN: weights-as-ANN <= chance + {100 * GOAL_WEIGHTS_AS_ANN:.0f} points: "
                  f"{'met' if g['weights_as_ann'] else 'not met'}; inversion <= chance + {100 * GOAL_INVERSION:.0f} points: "
                  f"{'met' if g['inversion'] else 'not met'} (scenario 1), "
                  f"{'met' if g['snn_inversion'] else 'not met'} (scenario 2)"
              + ("" if g["accuracy_drop_points"] is None else f"; accuracy drop vs ANN {g['accuracy_drop_points']:.2f} points") + ".",
              "", "Inverted images: " + ", ".join(f"`{e[k]}`" for e in r["variants"].values()
                                                 for k in ("relu_inversion_png", "inversion_png", "snn_inversion_png", "prior_inversion_png")
                                                 if e.get(k)) + "."]
    if r["notes"]:
        lines += ["", "Notes:"] + [f"- {n}" for n in r["notes"]]
    lines += ["", "Model inversion scored by an evaluator is one measurable proxy for class leakage, not a privacy "
                  "guarantee (see docs/privacy.md)."]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return Path(path)
