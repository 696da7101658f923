"""Weight averaging of SNNs trained from one start ("model soup", Wortsman et al., ICML 2022).

Not a test and not part of the pipeline: a probe of whether averaging the T = 4 encryptions of
several seeds beats each of them (docs/low_latency.md, session 19: it does not). Averages every
trainable weight and bias, and each layer's threshold and initial membrane, of SNN artifacts with the
same graph; writes the soup as an SNN artifact (its manifest lists every member) and evaluates it
with `privsnn evaluate`.

    python bench/weight_soup.py --out runs/soup.pt --timesteps 4,8 \\
        runs/bench/cifar10_resnet20/private_low_latency_windowed_q60.pt \\
        runs/bench/cifar10_resnet20/private_low_latency_windowed_q60_s1.pt \\
        runs/bench/cifar10_resnet20/private_low_latency_windowed_q60_s2.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import CIFAR_TEST, IMAGENET_NORM, RESNET20, privsnn, read_json, set_threads  # noqa: E402

from privatesnn.artifact import load_snn, save_snn  # noqa: E402
from privatesnn.graph import Graph, Neuron  # noqa: E402
from privatesnn.manifest import Manifest, parent_entry  # noqa: E402


def soup(graphs: list[Graph]) -> Graph:
    """The uniform average of ``graphs`` (same nodes and shapes): trainable weights and biases, and each
    neuron layer's threshold and initial membrane; everything else from the first."""
    out = graphs[0].copy()
    for name, node in out.nodes.items():
        members = [g.nodes.get(name) for g in graphs]
        if any(m is None or type(m) is not type(node) for m in members):
            raise SystemExit(f"bench/weight_soup.py: node {name!r} differs between the artifacts")
        if isinstance(node, Neuron):
            node.threshold = sum(m.threshold for m in members) / len(members)
            node.v_init = sum(m.v_init for m in members) / len(members)
            continue
        if not getattr(node, "trainable", False):
            continue
        for attr in ("weight", "bias"):
            if isinstance(getattr(node, attr, None), torch.Tensor):
                setattr(node, attr, torch.stack([getattr(m, attr) for m in members]).mean(0))
    out.meta.pop("host_current_grid", None)  # a QAT grid belongs to one member's weights
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("snns", nargs="+", help="SNN artifacts trained from the same start")
    p.add_argument("--out", required=True, help="the soup artifact")
    p.add_argument("--timesteps", default="4,8")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if len(args.snns) < 2:
        raise SystemExit("bench/weight_soup.py: give at least two SNN artifacts")
    set_threads(args.threads)
    arts = [load_snn(s) for s in args.snns]
    parents = [parent_entry(s, "snn") for s in args.snns]
    first = arts[0].manifest
    manifest = Manifest(kind=first.kind if first else "snn", command="bench/weight_soup.py",
                        settings={"method": "uniform weight average", "members": len(arts)},
                        inputs={"snn": [q["sha256"] for q in parents]},
                        real_data_read=any(a.manifest is not None and a.manifest.real_data_read for a in arts),
                        private=all(a.private for a in arts), parents=parents)
    save_snn(args.out, soup([a.graph for a in arts]), arts[0].settings, manifest)
    js = Path(args.out).with_suffix(".eval.json")
    privsnn("evaluate", "--model", f"resnet20:{RESNET20}", *IMAGENET_NORM, "--snn", args.out, "--data", CIFAR_TEST,
            "--timesteps", args.timesteps, "--json", js)
    for r in read_json(js)["results"]:
        print(f"soup of {len(arts)}: T={r['timesteps']} accuracy {100 * r['accuracy']:.2f}%")


if __name__ == "__main__":
    main()
