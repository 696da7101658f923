"""Model coverage: every architecture family the toolkit takes, through the whole private path.

For each model: ANN accuracy, conversion time, the private (encrypted) SNN's accuracy at a few T,
the graph after lowering (synaptic layers, neurons) and the Loihi 2 cores of its Lava deployment
(or why Lava refuses it). Rows:

* digits families, trained here on the digits training split (the same recipe as
  scripts/train_digits.py): the packaged CNN, a pre-activation ResNet, a DenseNet-BC
  (concatenation), a MobileNet-style net (depthwise convs, ReLU6), a max-pooling CNN, and the
  DenseNet again imported from ONNX;
* the shared pretrained CIFAR-10 ResNet-20 (with --cifar; reuses bench/accuracy.py's synthetic
  images and private SNN from runs/bench/cifar10_resnet20/, evaluated on all 1900 test images);
* registry architectures with no pretrained weights here (ResNet-32/44/56, VGGs, pre-activation
  ResNet-20, DenseNet-BC-40): structure only (random weights), so no accuracy.

    python bench/models.py                 # digits families + registry structure (~15 min, 2 cores)
    python bench/models.py --cifar         # + the shared ResNet-20 (needs bench/accuracy.py's run)

Writes bench/results/models.json and prints a markdown table (the README's).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench.common import CIFAR_TEST, IMAGENET_NORM, RESNET20, RUNS, privsnn, read_json, write_results  # noqa: E402

TIMESTEPS = "4,8,16,32"
DIGITS_FAMILIES = [  # (architecture, family, train epochs)
    ("digits_cnn", "post-activation CNN + BN (packaged)", 0),
    ("digits_preact_resnet", "pre-activation ResNet (BN after add)", 40),
    ("digits_densenet", "DenseNet-BC (concatenation)", 40),
    ("digits_mobilenet", "MobileNet-style (depthwise, ReLU6)", 40),
    ("digits_maxpool_cnn", "max-pooling CNN", 30),
]
STRUCTURE_ONLY = ["resnet32", "resnet44", "resnet56", "vgg11", "vgg16", "vgg16_nobn", "preact_resnet20",
                  "densenet40_bc"]


def train_digits_model(arch: str, epochs: int, out: Path) -> float:
    """Train ``arch`` on the digits training split; save its state dict; return the seconds taken."""
    from train_digits import train

    from privatesnn.io_utils import torch_save

    t0 = time.time()
    sd, _ = train(arch, seed=0, epochs=epochs)
    torch_save(out, sd)
    return time.time() - t0


def graph_stats(snn_path: Path) -> dict:
    from privatesnn.artifact import load_snn

    g = load_snn(snn_path).graph
    return {"synaptic_layers": len(g.weighted()), "neurons": sum(math.prod(n.shape) for n in g.neurons()),
            "neuron_layers": len(g.neurons())}


def lava_cores(snn_path: Path, out_dir: Path, timesteps: int) -> dict:
    """Loihi 2 cores of the Lava deployment, or the reason Lava refuses the graph."""
    from privatesnn.api import export
    from privatesnn.errors import PrivsnnError

    try:
        export(snn_path, "lava", out_dir, timesteps=timesteps, hw="loihi2", chips=1000, log=lambda *a, **k: None)
    except PrivsnnError as e:  # an unsupported graph: record why (the CLI prints the same message)
        return {"loihi2_cores": None, "lava": f"refused: {e}"}
    mapping = read_json(out_dir / "mapping.json")
    return {"loihi2_cores": mapping["cores_needed"], "lava": "ok"}


def private_path(name: str, model: list[str], data: str, work: Path, *, synth_num: int, synth_iters: int,
                 train_epochs: int, train_t: int, heldout_timesteps: int = 32, reuse: bool = False) -> dict:
    """synthesize -> convert (timed) -> train (encryption) -> evaluate; plus lowering stats and cores."""
    work.mkdir(parents=True, exist_ok=True)
    synth, snn, private = work / "synth.npz", work / "snn.pt", work / "private.pt"
    row: dict = {"model": name}
    if not (reuse and synth.exists()):
        row["synthesize_s"] = privsnn("synthesize", *model, "--num", synth_num, "--iterations", synth_iters,
                                      "--batch-size", min(synth_num, 250), "--out", synth, "--overwrite")
    row["convert_s"] = privsnn("convert", *model, "--synthetic", synth, "--timesteps", heldout_timesteps,
                               "--out", snn)
    if not (reuse and private.exists()):
        row["train_s"] = privsnn("train", "--snn", snn, *teacher_args(model), "--synthetic", synth,
                                 "--epochs", train_epochs, "--timesteps", train_t, "--lr", "1e-4", "--out", private)
    row.update(evaluate(model, private, data, work / "eval.json"))
    row.update(graph_stats(private))
    row.update(lava_cores(private, work / "lava", heldout_timesteps))
    return row


def teacher_args(model: list[str]) -> list[str]:
    return ["--teacher" if a == "--model" else a for a in model]


def evaluate(model: list[str], snn: Path, data: str, js: Path) -> dict:
    t0 = time.time()
    privsnn("evaluate", *model, "--data", data, "--snn", snn, "--timesteps", TIMESTEPS, "--json", js)
    res = read_json(js)
    return {"ann_accuracy": res["ann_accuracy"], "n": res["n"], "evaluate_s": time.time() - t0,
            "snn_accuracy": {str(r["timesteps"]): r["accuracy"] for r in res["results"]}}


def structure_only(arch: str, work: Path) -> dict:
    """Extraction, conversion (random weights, random images) and the Lava mapping of ``arch``."""
    import torch

    from privatesnn.artifact import save_snn
    from privatesnn.conversion import ConversionSettings, convert
    from privatesnn.manifest import Manifest
    from privatesnn.models import create_model, model_cfg
    from privatesnn.models.loading import LoadedModel

    torch.manual_seed(0)
    cfg = model_cfg(arch)
    loaded = LoadedModel(net=create_model(arch).eval(), spec=arch, arch=arch, input_shape=cfg.input_shape,
                         num_classes=cfg.num_classes, mean=cfg.mean, std=cfg.std, sha256="0" * 64)
    t0 = time.time()
    graph = convert(loaded, torch.rand(8, *cfg.input_shape), ConversionSettings(timesteps=32), progress=False)
    seconds = time.time() - t0
    work.mkdir(parents=True, exist_ok=True)
    path = save_snn(work / "snn.pt", graph, {"timesteps": 32},
                    Manifest(kind="snn", command="bench/models.py structure only (random weights)", settings={}))
    row = {"model": arch, "convert_s": seconds, "weights": "random (none available here)"}
    row.update(graph_stats(path))
    row.update(lava_cores(path, work / "lava", 32))
    return row


def markdown(rows: list[dict]) -> str:
    ts = TIMESTEPS.split(",")
    head = ("| model | family | ANN | " + " | ".join(f"SNN T={t}" for t in ts)
            + " | convert (s) | synaptic layers | neurons | Loihi 2 cores |")
    lines = [head, "|" + "---|" * (len(ts) + 7)]
    for r in rows:
        acc = r.get("snn_accuracy") or {}
        cells = [f"{100 * acc[t]:.1f}" if t in acc else "-" for t in ts]
        ann = f"{100 * r['ann_accuracy']:.1f}" if "ann_accuracy" in r else "-"
        cores = r["loihi2_cores"] if r.get("loihi2_cores") is not None else "n/a*"
        lines.append(f"| {r['model']} | {r.get('family', '')} | {ann} | " + " | ".join(cells)
                     + f" | {r['convert_s']:.1f} | {r['synaptic_layers']} | {r['neurons']:,} | {cores} |")
    refused = [r for r in rows if r.get("loihi2_cores") is None]
    if refused:
        lines.append("")
        lines.extend(f"\\* {r['model']}: {r['lava']}" for r in refused)
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cifar", action="store_true", help="add the shared ResNet-20 (reuses bench/accuracy.py's run)")
    p.add_argument("--only", default=None, help="comma list of model names to run")
    p.add_argument("--synth", type=int, default=1000, help="synthetic images per digits model")
    p.add_argument("--epochs", type=int, default=5, help="encryption epochs (T=8) per digits model")
    p.add_argument("--reuse", action="store_true", help="reuse trained ANNs, synthetic sets and private SNNs")
    args = p.parse_args()
    only = set(args.only.split(",")) if args.only else None
    work = RUNS / "models"
    rows = []
    for arch, family, epochs in DIGITS_FAMILIES:
        if only and arch not in only:
            continue
        ckpt = work / f"{arch}.pt"
        row_extra = {"family": family}
        if epochs:
            if not (args.reuse and ckpt.exists()):
                work.mkdir(parents=True, exist_ok=True)
                row_extra["ann_train_s"] = train_digits_model(arch, epochs, ckpt)
            model = ["--model", f"{arch}:{ckpt}"]
        else:
            model = ["--model", "digits"]
        row = private_path(arch, model, "digits", work / arch, synth_num=args.synth, synth_iters=200,
                           train_epochs=args.epochs, train_t=8, reuse=args.reuse)
        rows.append({**row, **row_extra})
        print(markdown(rows[-1:]))
        if arch == "digits_densenet" and (not only or "digits_densenet_onnx" in only or arch in only):
            rows.append({**onnx_row(arch, ckpt, work, args), "family": "DenseNet-BC, imported from ONNX"})
    if args.cifar:
        rows.append({**resnet20_row(work), "family": "post-activation ResNet (shared pretrained weights)"})
    for arch in STRUCTURE_ONLY:
        if only and arch not in only:
            continue
        rows.append({**structure_only(arch, work / arch), "family": "registry, no weights here"})
    table = markdown(rows)
    print(table)
    write_results("models.json", {"rows": rows, "timesteps": TIMESTEPS, "table": table,
                                  "settings": {"synthetic_images": args.synth, "encryption_epochs": args.epochs,
                                               "encryption_t": 8, "convert_t": 32}})


def onnx_row(arch: str, ckpt: Path, work: Path, args) -> dict:
    import torch

    from privatesnn.exporters.onnx_export import torch_onnx_export
    from privatesnn.models import load_model, model_cfg

    loaded = load_model(f"{arch}:{ckpt}")
    path = work / f"{arch}.onnx"
    torch_onnx_export(loaded.net.eval(), (torch.rand(1, *loaded.input_shape),), path, input_names=["x"],
                      output_names=["y"], opset_version=13)
    cfg = model_cfg(arch)
    model = ["--model", str(path), "--mean", ",".join(map(str, cfg.mean)), "--std", ",".join(map(str, cfg.std))]
    row = private_path(f"{arch} (ONNX)", model, "digits", work / f"{arch}_onnx", synth_num=args.synth,
                       synth_iters=200, train_epochs=args.epochs, train_t=8, reuse=args.reuse)
    return row


def resnet20_row(work: Path) -> dict:
    src = RUNS / "cifar10_resnet20"
    synth, private = src / "synth.npz", src / "private.pt"
    if not (synth.exists() and private.exists()):
        raise SystemExit(f"{src}: run `python bench/accuracy.py --cases cifar10` first (its synthetic images "
                         f"and private SNN are reused here)")
    model = ["--model", f"resnet20:{RESNET20}", *IMAGENET_NORM]
    out = work / "resnet20"
    out.mkdir(parents=True, exist_ok=True)
    row = {"model": "resnet20 (shared)",
           "convert_s": privsnn("convert", *model, "--synthetic", synth, "--timesteps", 32, "--out", out / "snn.pt")}
    row.update(evaluate(model, private, CIFAR_TEST, out / "eval.json"))
    row.update(graph_stats(private))
    row.update(lava_cores(private, out / "lava", 32))
    return row


if __name__ == "__main__":
    main()
