"""`privsnn energy`: synaptic operations counted during simulation, and energy under four conventions."""

from __future__ import annotations

import argparse

from .common import add_device_arg, add_model_args, add_output_args, emit, positive_int, resolve_device

DESCRIPTION = """Count an SNN's operations while it runs (per layer, per image: spikes, accumulates,
multiply-accumulates, neuron updates, the dense count) and estimate its energy against the ANN
under four conventions, side by side: the paper's per-timestep convention, the honest
all-timesteps count (45 nm), a memory-aware model against an int8 ANN, and a Loihi-1 proxy.

  privsnn energy --snn snn.pt --data digits --out energy/
  privsnn energy --snn snn.pt --synthetic synth.npz --timesteps 16 --out energy/   (no real data)

Writes energy.json, energy.md and PNG plots into --out. --energy-model FILE replaces the table of
constants (hw_targets/energy_models.json; every field needs a value and a citation).
Definitions: docs/energy.md.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--snn", required=True, metavar="FILE", help="an SNN artifact from convert/train")
    add_model_args(p, required=False)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="SPEC", help="real labelled images (reports accuracy too), e.g. digits")
    src.add_argument("--synthetic", metavar="NPZ", help="synthetic images from `privsnn synthesize` (no real data)")
    p.add_argument("--timesteps", type=positive_int, default=None, help="simulation length T (default: the artifact's)")
    p.add_argument("--limit", type=positive_int, default=None, help="count on the first N images only")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--energy-model", default=None, metavar="FILE",
                   help="energy constants (JSON, same fields as hw_targets/energy_models.json)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    add_output_args(p)
    add_device_arg(p)


def run(args: argparse.Namespace) -> int:
    import sys

    from privatesnn.hw_targets.energy_models import CONVENTIONS, format_energy, load_energy_model

    from ..artifact import check_same_model, load_snn
    from ..energy_report import TITLES, make_result, write_report
    from ..errors import PrivsnnError
    from ..io_utils import sha256_file
    from ..ops_count import count_ann, count_snn

    model = load_energy_model(args.energy_model)  # fail fast on a bad table
    artifact = load_snn(args.snn)
    graph = artifact.graph
    T = args.timesteps or artifact.timesteps
    if T > 100_000:
        raise PrivsnnError(f"--timesteps must be in 1..100000, got {T}")
    device = resolve_device(args.device)
    if args.data:
        from ..data import load_data
        from ..evaluation import check_classes

        data = load_data(args.data).limit(args.limit)
        check_classes(data, int(graph.meta.get("num_classes", 0)) or data.num_classes, "the SNN")
        images, labels, what = data.x, data.y, f"real: {args.data}"
    else:
        from ..synthesis.store import load_synthetic

        synth = load_synthetic(args.synthetic)
        images, labels, what = synth.images[:args.limit], None, f"synthetic: {args.synthetic}"
    if tuple(images.shape[1:]) != tuple(graph.input.shape):
        raise PrivsnnError(f"{args.data or args.synthetic}: images are {tuple(images.shape[1:])}, the SNN takes "
                           f"{tuple(graph.input.shape)}")
    ann_graph_src = "the SNN's own graph run as a ReLU ANN"
    ann_g = graph
    if args.model:
        from ..conversion import ann_graph
        from .common import load_model_from_args

        loaded = load_model_from_args(args)
        check_same_model(artifact, loaded)
        ann_g, ann_graph_src = ann_graph(loaded), f"the ANN {loaded.spec}"
    print(f"counting {args.snn} on {len(images)} images at T={T} ...", file=sys.stderr)
    snn = count_snn(graph, images, T, args.batch_size, labels, args.seed, device, progress=True)[T]
    ann = count_ann(ann_g, images, max(args.batch_size, 128), labels, device)
    source = {"snn": str(args.snn), "snn_sha256": sha256_file(args.snn), "images": what, "ann": ann_graph_src,
              "private": artifact.private, "seed": args.seed, "node_order": [n.name for n in graph]}
    res = make_result(snn, ann, model, source)
    paths = write_report(res, args.out)
    if snn.accuracy is not None:
        print(f"accuracy: SNN {100 * snn.accuracy:.2f}% at T={T}, ANN {100 * ann.accuracy:.2f}%")
    print(f"{'convention':34s} {'SNN / image':>12s} {'ANN / image':>12s} {'ANN/SNN':>8s}")
    for name in CONVENTIONS:
        c = res["conventions"][name]
        ratio = "n/a" if c["ratio"] is None else f"{c['ratio']:.3g}x"
        print(f"{TITLES[name]:34s} {format_energy(c['snn_pj']):>12s} {format_energy(c['ann_pj']):>12s} {ratio:>8s}")
    print(f"wrote {paths['json']}, {paths['md']} and plots in {args.out}")
    emit(res, args.json)
    return 0
