"""The Python API: every stage of the pipeline as a function, for notebooks and scripts.

The `privsnn` commands are thin wrappers over these functions (one code path). Each stage takes
objects or paths (a :class:`LoadedModel` or a model spec; an :class:`SNNArtifact`, a
:class:`SyntheticSet` or their files), writes its artifact with a provenance manifest like the CLI
does, and returns an object::

    import privatesnn as ps

    ann = ps.load_model("digits")
    synth = ps.synthesize(ann, 300, "run/synth.npz")            # no real data
    snn = ps.convert(ann, "run/snn.pt", synthetic=synth, timesteps=4, qcfs_levels=4)
    private = ps.train(snn, ann, synth, "run/private.pt", epochs=2, timesteps=4)
    print(ps.evaluate("digits", snn=private, timesteps=[2, 4])["results"])
    ps.energy(private, "run/energy", data="digits")
    ps.export(private, "lava", "run/lava")
    ps.simulate("run/lava", "digits", engine="reference")
    ps.report(["run"], "run/report.html")

``log`` (default :func:`print`) receives the one-line summaries the commands print.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .artifact import SNNArtifact, check_same_model, load_snn, save_snn
from .errors import PrivsnnError
from .manifest import Manifest, parent_entry
from .models.loading import LoadedModel
from .synthesis.store import SyntheticSet, load_synthetic

Log = Callable[[str], None]
PathLike = str | Path


def _device(device: str | torch.device) -> torch.device:
    from .devices import resolve_device

    return device if isinstance(device, torch.device) else resolve_device(device)


def load_model(spec: str | LoadedModel, num_classes: int | None = None, mean: Sequence[float] | str | None = None,
               std: Sequence[float] | str | None = None) -> LoadedModel:
    """A pretrained classifier: ``"digits"``, ``"ARCH:CHECKPOINT"`` (e.g. ``resnet20:model.th``) or
    ``"PATH.onnx"``; a :class:`LoadedModel` is returned as it is."""
    if isinstance(spec, LoadedModel):
        return spec
    from .models import load_model as _load

    return _load(spec, num_classes=num_classes, mean=mean, std=std)


def _snn(snn: SNNArtifact | PathLike) -> SNNArtifact:
    return snn if isinstance(snn, SNNArtifact) else load_snn(snn)


def _snn_path(snn: SNNArtifact | PathLike) -> Path:
    if isinstance(snn, SNNArtifact):
        if snn.path is None:
            raise PrivsnnError("this SNN artifact has no file (save it first): stages record their inputs' hashes")
        return snn.path
    return Path(snn)


def _synthetic(synth: SyntheticSet | PathLike, expect_model_sha256: str | None = None) -> SyntheticSet:
    if isinstance(synth, SyntheticSet):
        if synth.path is None:
            raise PrivsnnError("this synthetic set has no file: stages record their inputs' hashes")
        got = (synth.meta.get("model") or {}).get("sha256")
        if expect_model_sha256 is not None and got != expect_model_sha256:
            return load_synthetic(synth.path, expect_model_sha256)  # raises the usual error
        return synth
    return load_synthetic(synth, expect_model_sha256)


def _as_list(items: Any) -> list[Any]:
    """One item or a sequence of them (a str/Path is one item)."""
    return list(items) if isinstance(items, (list, tuple)) else [items]


def _fits(images: torch.Tensor, shape, what: str, target: str) -> None:
    if tuple(images.shape[1:]) != tuple(shape):
        raise PrivsnnError(f"{what}: images {tuple(images.shape[1:])} do not fit {target} {tuple(shape)}")


# --- the private path (synthetic images only) -------------------------------------------------

def synthesize(model: LoadedModel | str, num_images: int, out: PathLike, *, method: str | None = None,
               batch_size: int = 256, iterations: int | None = None, lr: float | None = None, seed: int = 0,
               flip: bool | None = None, device: str | torch.device = "cpu", overwrite: bool = False,
               log: Log = print, **method_options: float) -> SyntheticSet:
    """Class-balanced images synthesized from ``model`` alone (no real data), written to ``out``
    (npz + PNG preview + manifest); an interrupted run resumes from ``out``'s partial file.
    ``method_options``: ``beta``, ``temperature`` (dirichlet), ``r_feature``, ``tv``, ``boundary``, ``crop``
    (bn-inversion)."""
    from . import distributed
    from .synthesis import make_config
    from .synthesis import synthesize as _synthesize

    for name, v in method_options.items():
        if name not in ("beta", "temperature", "r_feature", "tv", "boundary", "crop"):
            raise PrivsnnError(f"unknown synthesis option {name!r} (expected beta, temperature, r_feature, tv, "
                               f"boundary or crop)")
    loaded = load_model(model)
    ctx, dev = distributed.setup(_device(device))
    extra = {k: v for k, v in method_options.items() if v is not None}
    cfg = make_config(loaded, num_images, method=method, batch_size=batch_size, iterations=iterations, lr=lr,
                      seed=seed, flip=flip, **extra)
    res = _synthesize(loaded, cfg, out, device=dev, overwrite=overwrite, ctx=ctx)
    assert res is not None
    if ctx.is_main:
        log(f"synthesized {res['n']} images ({cfg.method}, {cfg.iterations} steps/batch) in {res['seconds']:.1f}s "
            f"({res['seconds_per_batch']:.1f}s/batch) -> {out}; model agrees with the target label on "
            f"{res['target_agreement']:.1%} (mean target confidence {res['mean_target_confidence']:.3f})")
    ctx.barrier()  # rank 0 writes the file; every rank returns it
    synth = load_synthetic(out)
    synth.meta["summary"] = {"model": loaded.spec, "method": cfg.method, **res}
    return synth


def convert(model: LoadedModel | str, out: PathLike, *,
            synthetic: SyntheticSet | PathLike | Sequence[SyntheticSet | PathLike] | None = None,
            calibration_data: str | None = None, calibration_limit: int | None = None, timesteps: int = 32,
            threshold: str = "percentile:99.9", balance: str = "none", encoding: str = "direct",
            reset: str = "subtract", leak: float = 1.0, v_init: float = 0.5, signed: bool = False,
            windowed: bool = False, fold_pooling: bool = True,
            qcfs_levels: int = 0, qcfs_epochs: int = 30, qcfs_lr: float = 1e-4, qcfs_optimizer: str = "adam",
            qcfs_feature_weight: float = 1.0, qcfs_kd_loss: str = "kl", qcfs_rate_reg: float = 0.0,
            qcfs_ema: float = 0.0, qcfs_anchor: float = 0.0,
            qcfs_rate_weighting: str = "layers", qcfs_prune: float = 0.0, qcfs_prune_input: float = 0.0,
            qcfs_trapdoor: float = 0.0, qcfs_trapdoor_alpha: float = 0.3, qcfs_trapdoor_augment: bool = False,
            qcfs_misalign: float = 0.0, trapdoor_key: int | None = None, batch_size: int = 128, seed: int = 0,
            device: str | torch.device = "cpu", log: Log = print) -> SNNArtifact:
    """ANN -> SNN with thresholds set on ``synthetic`` images (private), or on real
    ``calibration_data`` (the non-private baseline, marked so in the manifest); written to ``out``.
    Several synthetic sets (e.g. other ``synthesize`` seeds) are used together, in the order given.
    ``qcfs_rate_reg``: weight of a penalty on the QCFS levels (fewer spikes, as ``train(rate_reg=...)``
    but at the cost of an ANN step; ``qcfs_rate_weighting="synops"`` weighs each layer by what its
    spikes cost). ``qcfs_prune`` / ``qcfs_prune_input``: final share of zero weights in the layers fed by
    spikes / by the analog image, reached by gradual magnitude pruning during the QCFS fine-tuning (fewer
    synaptic operations; :mod:`privatesnn.pruning`). ``qcfs_trapdoor``: share of QCFS batches stamped with secret class triggers made from
    ``trapdoor_key`` (a model-inversion defence; ``train(trapdoor=..., trapdoor_key=...)`` with the
    same key keeps them; ``qcfs_trapdoor_augment`` stamps them before the random shift and flip, so the
    network answers a trigger wherever it lands). The key is not written to the artifact or its manifest.
    ``qcfs_misalign``: weight of a penalty on the cosine between the QCFS network's and the ANN's input
    gradients of a class logit (a model-inversion defence, :mod:`privatesnn.gradient_alignment`)."""
    from .conversion import ConversionSettings
    from .conversion import convert as _convert

    if (synthetic is None) == (calibration_data is None):
        raise PrivsnnError("convert needs exactly one of synthetic images or calibration_data (real, non-private)")
    if timesteps <= 0 or timesteps > 100_000:
        raise PrivsnnError(f"--timesteps must be in 1..100000, got {timesteps}")
    if not 0.0 <= leak <= 1.0:
        raise PrivsnnError(f"--leak must be in [0, 1], got {leak}")
    if qcfs_levels < 0 or qcfs_levels > 1024:
        raise PrivsnnError(f"--qcfs-levels must be in 0..1024, got {qcfs_levels}")
    if not (qcfs_lr > 0 and qcfs_lr < 10):
        raise PrivsnnError(f"--qcfs-lr must be in (0, 10), got {qcfs_lr}")
    if qcfs_trapdoor > 0 and qcfs_levels == 0:
        raise PrivsnnError("--qcfs-trapdoor needs QCFS fine-tuning (--qcfs-levels L)")
    if qcfs_trapdoor_augment and qcfs_trapdoor == 0:
        raise PrivsnnError("--qcfs-trapdoor-augment needs --qcfs-trapdoor RATE")
    if not (qcfs_misalign >= 0 and math.isfinite(qcfs_misalign)):
        raise PrivsnnError(f"--qcfs-misalign must be >= 0, got {qcfs_misalign}")
    if qcfs_misalign > 0 and qcfs_levels == 0:
        raise PrivsnnError("--qcfs-misalign needs QCFS fine-tuning (--qcfs-levels L)")
    if not (qcfs_rate_reg >= 0 and math.isfinite(qcfs_rate_reg)):
        raise PrivsnnError(f"--qcfs-rate-reg must be >= 0, got {qcfs_rate_reg}")
    if qcfs_rate_reg > 0 and qcfs_levels == 0:
        raise PrivsnnError("--qcfs-rate-reg needs QCFS fine-tuning (--qcfs-levels L)")
    for name, value in (("--qcfs-prune", qcfs_prune), ("--qcfs-prune-input", qcfs_prune_input)):
        if not (0.0 <= value < 1.0):
            raise PrivsnnError(f"{name} must be in [0, 1), got {value}")
        if value > 0 and qcfs_levels == 0:
            raise PrivsnnError(f"{name} needs QCFS fine-tuning (--qcfs-levels L)")
    torch.manual_seed(seed)
    loaded = load_model(model)
    private = synthetic is not None
    if private:
        sets = [_synthetic(s, expect_model_sha256=loaded.sha256) for s in _as_list(synthetic)]
        for synth in sets:
            _fits(synth.images, loaded.input_shape, str(synth.path), "the model's input")
        images = torch.cat([s.images for s in sets])
        parents = [parent_entry(s.path, "synthetic") for s in sets]
        hashes = [p["sha256"] for p in parents]
        inputs = {"model": loaded.sha256, "synthetic": hashes[0] if len(sets) == 1 else hashes}
    else:
        from .data import load_data

        images = load_data(calibration_data).x
        parents, inputs = [], {"model": loaded.sha256}
    limit = calibration_limit or (None if private else 256)
    if limit:
        images = images[:limit]
    settings = ConversionSettings(timesteps=timesteps, threshold=threshold, encoding=encoding, balance=balance,
                                  reset=reset, leak=leak, v_init=v_init, signed=bool(signed), windowed=bool(windowed),
                                  batch_size=batch_size,
                                  fold_pooling=fold_pooling, qcfs_levels=qcfs_levels, qcfs_epochs=qcfs_epochs,
                                  qcfs_lr=qcfs_lr, qcfs_feature_weight=qcfs_feature_weight, qcfs_kd_loss=qcfs_kd_loss, qcfs_ema=qcfs_ema, qcfs_anchor=qcfs_anchor,
                                  qcfs_rate_reg=qcfs_rate_reg, qcfs_rate_weighting=qcfs_rate_weighting,
                                  qcfs_prune=qcfs_prune, qcfs_prune_input=qcfs_prune_input,
                                  qcfs_optimizer=qcfs_optimizer, qcfs_trapdoor=qcfs_trapdoor,
                                  qcfs_trapdoor_alpha=qcfs_trapdoor_alpha,
                                  qcfs_trapdoor_augment=bool(qcfs_trapdoor_augment), trapdoor_key=trapdoor_key,
                                  qcfs_misalign=qcfs_misalign,
                                  seed=seed)
    t0 = time.time()
    graph = _convert(loaded, images, settings, _device(device))
    elapsed = time.time() - t0
    record = {**settings.__dict__, "calibration_images": len(images), "private": private,
              "calibration": "synthetic" if private else f"real:{calibration_data}"}
    if record.pop("trapdoor_key", None) is not None and qcfs_trapdoor > 0:
        from .training import SECRET_NOT_RECORDED

        record["trapdoor_key"] = SECRET_NOT_RECORDED
    manifest = Manifest(kind="snn", command="convert", settings=record, inputs=inputs, real_data_read=not private,
                        private=private, seed=seed, parents=[{"role": "model", **loaded.describe()}, *parents])
    save_snn(out, graph, record, manifest)
    n_neurons = sum(int(torch.tensor(n.shape).prod()) for n in graph.neurons())
    log(f"converted {loaded.spec} -> {out}: {len(graph.neurons())} spiking layers, {n_neurons} neurons, "
        f"T={timesteps}, calibrated on {len(images)} {'synthetic' if private else 'REAL'} images ({elapsed:.1f}s)")
    low = graph.meta.get("lowering")
    if low:
        log(f"  lowered {low['concatenations']} concatenations and {low['batchnorms_folded_per_reader']} "
            f"pre-activation BatchNorms: {low['synaptic_layers_before']} -> {low['synaptic_layers_after']} synaptic "
            f"layers (split and per-reader copies; docs/design.md)")
    art = load_snn(out)
    art.settings["seconds"] = elapsed
    return art


def calibrate(snn: SNNArtifact | PathLike, synthetic: SyntheticSet | PathLike, timesteps: int, out: PathLike, *,
              images: int = 256, iterations: int = 1, seed: int = 0, device: str | torch.device = "cpu",
              log: Log = print) -> SNNArtifact:
    """Bias calibration of ``snn`` for ``timesteps`` on synthetic images (Li et al. 2021)."""
    from .calibration import calibrate_biases

    if not 0 < timesteps <= 100_000:
        raise PrivsnnError(f"--timesteps must be in 1..100000, got {timesteps}")
    artifact, snn_path = _snn(snn), _snn_path(snn)
    synth = _synthetic(synthetic, expect_model_sha256=(artifact.model or {}).get("sha256"))
    _fits(synth.images, artifact.graph.input.shape, str(synth.path), "the SNN input")
    pick = torch.randperm(len(synth.images), generator=torch.Generator().manual_seed(seed))[:images]
    graph = artifact.graph.copy()
    t0 = time.time()
    errors = calibrate_biases(graph, synth.images[pick], timesteps, iterations, _device(device))
    graph.meta["timesteps"] = timesteps
    record = {"method": "bias", "timesteps": timesteps, "images": len(pick), "iterations": iterations,
              "mean_rate_error_before": errors}
    parents = [parent_entry(snn_path, "snn"), parent_entry(synth.path, "synthetic")]
    manifest = Manifest(kind="snn", command="calibrate", settings=record,
                        inputs={"snn": parents[0]["sha256"], "synthetic": parents[1]["sha256"]},
                        real_data_read=bool(artifact.manifest and artifact.manifest.real_data_read),
                        private=artifact.private, seed=seed, parents=parents)
    save_snn(out, graph, {**artifact.settings, "calibration_bias": record, "timesteps": timesteps}, manifest)
    log(f"calibrated {snn_path} -> {out} for T={timesteps} on {len(pick)} synthetic images ({time.time() - t0:.0f}s)")
    art = load_snn(out)
    art.settings["seconds"] = time.time() - t0
    return art


def train(snn: SNNArtifact | PathLike, teacher: LoadedModel | str,
          synthetic: SyntheticSet | PathLike | Sequence[SyntheticSet | PathLike], out: PathLike,
          *, epochs: int = 5, timesteps: int | None = None, batch_size: int = 32, lr: float = 1e-4,
          kd_alpha: float = 0.7, kd_temperature: float = 4.0, kd_loss: str = "kl", rate_reg: float = 0.0,
          rate_weighting: str = "layers",
          anchor: float = 0.0, anchor_levels: int = 0, label_smoothing: float = 0.0, bido: tuple[float, float] = (0.0, 0.0),
          feature_weight: float = 0.0, neuron_lr: float = 0.0, freeze: str = "none", l2sp: float = 0.0,
          leak: float | None = None, reset: str | None = None, signed: bool = False, windowed: bool = False,
          surrogate_alpha: float = 0.3,
          augment: bool = True, cutmix: float = 0.0, tet: bool = False, ema: float = 0.0, trapdoor: float = 0.0, trapdoor_alpha: float = 0.2,
          trapdoor_key: int | None = None, trapdoor_per_class: int = 1,
          trapdoor_class_weights: Sequence[float] = (), trapdoor_self_audit: float = 0.0,
          trapdoor_learn: float = 0.0, trapdoor_neutral: float = 1.0, misalign: float = 0.0,
          qat: bool = False, amp: bool = False, resume: bool = False, seed: int = 0,
          device: str | torch.device = "cpu", log: Log = print) -> SNNArtifact:
    """PrivateSNN's weight encryption: BPTT through the spiking dynamics with distillation from
    ``teacher``, on synthetic images only (see :mod:`privatesnn.training`). Checkpoints after each
    epoch to ``<out>.ckpt.pt``; ``resume=True`` continues from it. Under torchrun, rank 0 writes.
    With ``trapdoor_learn > 0`` the learnt triggers are written to ``<out>.trapdoor.pt`` (a secret
    of the owner's, like the key: never part of the artifact). ``misalign``: weight of the penalty on
    the alignment of the SNN's input gradients with the teacher's (a model-inversion defence,
    :mod:`privatesnn.gradient_alignment`)."""
    from . import distributed
    from .io_utils import remove_stale_temps
    from .training import SECRET_NOT_RECORDED, TrainSettings, train_snn

    ctx, dev = distributed.setup(_device(device))
    artifact, snn_path = _snn(snn), _snn_path(snn)
    loaded = load_model(teacher)
    check_same_model(artifact, loaded, role="--teacher")
    sets = [_synthetic(s, expect_model_sha256=loaded.sha256) for s in _as_list(synthetic)]
    for synth in sets:
        _fits(synth.images, artifact.graph.input.shape, str(synth.path), "the SNN input")
    images, labels = torch.cat([s.images for s in sets]), torch.cat([s.labels for s in sets])
    settings = TrainSettings(epochs=epochs, timesteps=artifact.timesteps if timesteps is None else timesteps,
                             batch_size=batch_size, lr=lr, kd_alpha=kd_alpha, kd_temperature=kd_temperature,
                             kd_loss=kd_loss, rate_reg=rate_reg, rate_weighting=rate_weighting, anchor=anchor, anchor_levels=anchor_levels,
                             label_smoothing=label_smoothing, bido=tuple(bido),
                             feature_weight=feature_weight, neuron_lr=neuron_lr, freeze=freeze, l2sp=l2sp, leak=leak,
                             reset=reset, signed=bool(signed), windowed=bool(windowed), surrogate_alpha=surrogate_alpha, augment=augment,
                             cutmix=cutmix,
                             tet=bool(tet), ema=ema, trapdoor=trapdoor, trapdoor_alpha=trapdoor_alpha, trapdoor_key=trapdoor_key,
                             trapdoor_per_class=trapdoor_per_class,
                             trapdoor_class_weights=tuple(float(w) for w in trapdoor_class_weights),
                             trapdoor_self_audit=float(trapdoor_self_audit),
                             trapdoor_learn=trapdoor_learn, trapdoor_neutral=trapdoor_neutral, qat=qat,
                             misalign=misalign, amp=amp, seed=seed)
    out = Path(out)
    ckpt = out.with_name(out.name + ".ckpt.pt")
    if ckpt.exists() and not resume:
        raise PrivsnnError(f"{ckpt} exists from an earlier run: pass --resume to continue it, or delete it")
    if ctx.is_main:
        for dest in (out, ckpt):
            remove_stale_temps(dest)  # left by a killed run
    layer_teacher = None
    if settings.feature_weight > 0:
        from .conversion import layer_teacher_graph

        layer_teacher = layer_teacher_graph(loaded, artifact.graph)
    t0 = time.time()
    secrets_out: dict = {}
    graph = train_snn(artifact.graph, loaded.module(), images, labels, settings, ckpt, resume=resume,
                      device=dev, ctx=ctx, layer_teacher=layer_teacher, secrets_out=secrets_out,
                      on_epoch=lambda e, r: log(f"epoch {e}: loss {r['loss']:.4f}, spike rate {r['spike_rate']:.4f}, "
                                                f"agreement with teacher {r['teacher_agreement']:.3f} "
                                                f"({r['seconds']:.0f}s)"))
    if not ctx.is_main:  # rank 0 writes the artifact
        return artifact
    graph.meta["timesteps"] = settings.timesteps
    record = dict(settings.__dict__)
    if record.pop("trapdoor_key", None) is not None and settings.trapdoor > 0:
        record["trapdoor_key"] = SECRET_NOT_RECORDED
    record["timesteps"] = settings.timesteps
    record["processes"] = ctx.world_size
    record["synthetic_images"] = int(labels.shape[0])
    secret = out.with_name(out.name + ".trapdoor.pt")
    if "triggers" in secrets_out:
        record["trapdoor_triggers"] = f"learnt; written to {secret.name} (secret: keep it apart from the artifact)"
    parents = [parent_entry(snn_path, "snn"), *(parent_entry(s.path, "synthetic") for s in sets)]
    synth_hashes = [p["sha256"] for p in parents[1:]]
    manifest = Manifest(kind="private-snn", command="train", settings=record,
                        inputs={"snn": parents[0]["sha256"], "teacher": loaded.sha256,
                                "synthetic": synth_hashes[0] if len(sets) == 1 else synth_hashes},
                        real_data_read=bool(artifact.manifest and artifact.manifest.real_data_read),
                        private=artifact.private, seed=seed, parents=[*parents, {"role": "teacher", **loaded.describe()}])
    if "triggers" in secrets_out:  # the owner's secret, next to (not inside) the artifact
        from .io_utils import torch_save

        torch_save(secret, {"format": "privsnn-trapdoor-triggers/1", "triggers": secrets_out["triggers"],
                            "alpha": settings.trapdoor_alpha})
        log(f"learnt trapdoor triggers -> {secret} (keep this file secret and apart from the artifact)")
    save_snn(out, graph, record, manifest)
    ckpt.unlink(missing_ok=True)
    log(f"trained {snn_path} -> {out} in {time.time() - t0:.0f}s ({settings.epochs} epochs, T={settings.timesteps})")
    art = load_snn(out)
    art.settings["seconds"] = time.time() - t0
    return art


# --- measuring (the only stages that read real data) ------------------------------------------

def evaluate(data: str, *, model: LoadedModel | str | None = None, snn: SNNArtifact | PathLike | None = None,
             timesteps: Sequence[int] | str | None = None, limit: int | None = None, batch_size: int = 256,
             seed: int = 0, device: str | torch.device = "cpu", results_dir: PathLike | None = None,
             plot: PathLike | None = None, num_classes: int | None = None, mean: Sequence[float] | str | None = None,
             std: Sequence[float] | str | None = None, log: Log = print) -> dict[str, Any]:
    """Accuracy of an ANN and/or an SNN on real labelled test ``data`` (e.g. ``"digits"``,
    ``"npy:X.npy:Y.npy"``), at each of ``timesteps``. Paths in the result are relative to
    ``results_dir`` (default: the working directory); ``plot`` writes accuracy against T.
    ``num_classes``/``mean``/``std`` apply when ``model`` is a spec. The data is read first, so a bad
    data spec fails before any model is loaded."""
    from . import distributed
    from .data import load_data
    from .evaluation import accuracy
    from .io_utils import relative_path

    if model is None and snn is None:
        raise PrivsnnError("evaluate needs --model SPEC and/or --snn FILE")
    if limit is not None and limit <= 0:
        raise PrivsnnError(f"--limit must be > 0, got {limit}")
    ctx, dev = distributed.setup(_device(device))
    ds = load_data(data).limit(limit)
    result: dict[str, Any] = {"data": data, "n": len(ds)}
    loaded = None
    if model is not None:
        loaded = load_model(model, num_classes=num_classes, mean=mean, std=std)
        acc = accuracy(loaded.module(), ds, loaded.num_classes, batch_size, dev)
        log(f"ANN {loaded.spec}: accuracy {acc:.4f} on {len(ds)} images of {data}")
        result.update(model=loaded.spec, accuracy=acc, ann_accuracy=acc)
    if snn is not None:
        from .snn_eval import parse_timesteps, plot_accuracy_vs_t, snn_accuracy_over_time

        artifact, snn_path = _snn(snn), _snn_path(snn)
        if loaded is not None:
            check_same_model(artifact, loaded)
        if timesteps is not None and not isinstance(timesteps, str):
            timesteps = ",".join(str(int(t)) for t in timesteps)
        ts = parse_timesteps(timesteps, artifact.timesteps)
        accs, _ = snn_accuracy_over_time(artifact, ds, ts, min(batch_size, 100), dev, seed)
        for t in ts:
            log(f"SNN {snn_path}: T={t:<5d} accuracy {accs[t]:.4f}")
        base = Path(results_dir) if results_dir is not None else Path.cwd()
        result.update(snn=relative_path(snn_path, base), results=[{"timesteps": t, "accuracy": accs[t]} for t in ts],
                      private=artifact.private)
        if plot and len(ts) > 1 and ctx.is_main:
            plot_accuracy_vs_t({Path(snn_path).name: accs}, plot, result.get("ann_accuracy"), title=data)
            result["plot"] = relative_path(plot, base)
            log(f"wrote {plot}")
    return result


def energy(snn: SNNArtifact | PathLike, out: PathLike, *, data: str | None = None,
           synthetic: SyntheticSet | PathLike | None = None, model: LoadedModel | str | None = None,
           timesteps: int | None = None, limit: int | None = None, batch_size: int = 64,
           energy_model: PathLike | None = None, seed: int = 0, device: str | torch.device = "cpu",
           log: Log = print) -> dict[str, Any]:
    """Operation counts while the SNN runs on ``data`` (real) or ``synthetic`` images, the energy
    under four conventions against the ANN, and the on-chip delay; writes energy.json/.md and
    plots into ``out`` and returns energy.json's content."""
    import sys

    from .energy_report import TITLES, make_result, write_report
    from .hw_targets.energy_models import CONVENTIONS, format_energy, load_energy_model
    from .io_utils import relative_path, sha256_file
    from .ops_count import count_ann, count_snn

    if (data is None) == (synthetic is None):
        raise PrivsnnError("energy needs exactly one of data (real, labelled) or synthetic images")
    emodel = load_energy_model(energy_model)  # fail fast on a bad table
    artifact, snn_path = _snn(snn), _snn_path(snn)
    graph = artifact.graph
    T = timesteps or artifact.timesteps
    if T > 100_000:
        raise PrivsnnError(f"--timesteps must be in 1..100000, got {T}")
    if data is not None:
        from .data import load_data
        from .evaluation import check_classes

        ds = load_data(data).limit(limit)
        check_classes(ds, int(graph.meta.get("num_classes", 0)) or ds.num_classes, "the SNN")
        images, labels, what = ds.x, ds.y, f"real: {data}"
    else:
        synth = _synthetic(synthetic)
        images, labels, what = synth.images[:limit], None, f"synthetic: {relative_path(synth.path, out)}"
    _fits(images, graph.input.shape, str(data or synthetic), "the SNN input")
    ann_g, ann_src = graph, "the SNN's own graph run as a ReLU ANN"
    if model is not None:
        from .conversion import ann_graph

        loaded = load_model(model)
        check_same_model(artifact, loaded)
        ann_g, ann_src = ann_graph(loaded), f"the ANN {loaded.spec}"
    print(f"counting {snn_path} on {len(images)} images at T={T} ...", file=sys.stderr)
    dev = _device(device)
    snn_counts = count_snn(graph, images, T, batch_size, labels, seed, dev, progress=True)[T]
    ann_counts = count_ann(ann_g, images, max(batch_size, 128), labels, dev)
    source = {"snn": relative_path(snn_path, out), "snn_sha256": sha256_file(snn_path), "images": what,
              "ann": ann_src, "private": artifact.private, "seed": seed, "node_order": [n.name for n in graph]}
    res = make_result(snn_counts, ann_counts, emodel, source, graph=graph)
    paths = write_report(res, out)
    if snn_counts.accuracy is not None:
        log(f"accuracy: SNN {100 * snn_counts.accuracy:.2f}% at T={T}, ANN {100 * ann_counts.accuracy:.2f}%")
    log(f"{'convention':34s} {'SNN / image':>12s} {'ANN / image':>12s} {'ANN/SNN':>8s}")
    for name in CONVENTIONS:
        c = res["conventions"][name]
        ratio = "n/a" if c["ratio"] is None else f"{c['ratio']:.3g}x"
        log(f"{TITLES[name]:34s} {format_energy(c['snn_pj']):>12s} {format_energy(c['ann_pj']):>12s} {ratio:>8s}")
    lat = res["latency"]
    if lat.get("available"):
        log(f"on-chip delay (Loihi-1 timing, lower bound): {lat['latency_ms_per_image']:.3g} ms/image "
            f"({lat['steps_per_image']} steps x {lat['timestep_us']:.3g} us), "
            f"{lat['throughput_images_per_s']:.4g} images/s on {lat['cores']} cores")
    else:
        log(f"on-chip delay: not estimated ({lat.get('reason')})")
    log(f"wrote {paths['json']}, {paths['md']} and plots in {out}")
    return res


def audit(snn: SNNArtifact | PathLike, data: str, out: PathLike, *, model: str | None = None,
          evaluator: str | None = None, log: Log = print, **options: Any) -> dict[str, Any]:
    """The privacy audit (class-leakage attacks; see :func:`privatesnn.privacy.audit.run_audit`
    for ``options``); writes privacy.json/.md and the inverted-image grids into ``out``."""
    from .privacy.audit import run_audit

    if "device" in options:
        options["device"] = _device(options["device"])
    return run_audit(_snn_path(snn), model, data, out, evaluator_spec=evaluator, log=log, **options)


# --- deployment -------------------------------------------------------------------------------

def export(snn: SNNArtifact | PathLike, target: str, out: PathLike, *, timesteps: int | None = None,
           hw: str = "loihi2", chips: int = 1, reset: str = "match", force: bool = False,
           log: Log = print) -> dict[str, Any]:
    """Export to ``"nir"`` (a file), ``"lava"`` (a folder: netx HDF5, fixed point, mapping) or
    ``"onnx"``; returns the export's summary (also recorded in its manifest)."""
    from .exporters.export import export_snn

    return export_snn(_snn_path(snn), target, out, timesteps=timesteps, hw=hw, chips=chips, reset=reset,
                      force=force, log=log)


def simulate(artifact: PathLike, data: str, *, engine: str = "lava", **options: Any) -> dict[str, Any]:
    """Run an exported SNN on real test ``data`` as the chip would (``engine="reference"``: the
    bit-exact integer chip model, batched; ``"lava"``: Lava processes) and compare with the SNN.
    ``options``: see :func:`privatesnn.simulation.simulate_deployed`."""
    from .simulation import simulate_deployed

    return simulate_deployed(artifact, data, engine=engine, **options)


def report(run_dirs: Sequence[PathLike], out: PathLike, title: str = "privsnn report") -> Path:
    """One self-contained HTML page from run folders (see :mod:`privatesnn.html_report`)."""
    from .html_report import write_report

    return write_report(list(run_dirs), out, title)
