"""An adaptive attacker against decoy (trapdoor) defences: invert twice, the second time pushed away
from what the first found.

A trapdoor (Trap-MID; `train --trapdoor`) works when an inversion ends at a secret trigger instead of
the class's features. An attacker who suspects a decoy sees that each class's inversions converge
to one texture, so it inverts again with a penalty on the similarity to that first answer: the
optimisation must settle in the next optimum, which for a trapped class is where its features are.
This is attacker (c) of the audit (inversion through the SNN with surrogate gradients, the audit's
settings and evaluator) run in two rounds:

    round 1: invert as the audit does (seed s);
    round 2: invert again (seed s + 1) with loss += W * mean_j relu(cos(x - mean(x), r_j - mean(r_j)))
             over the round-1 images r_j of the same class.

Both rounds are scored by the independent evaluator (clustered standard errors, as the audit) and by
the victim itself (did the attack reach its goal). The second round is also run on an undefended SNN,
as the reference: the repulsion alone must not be what lowers or raises the score.

    python bench/adaptive_inversion.py --snn enc.pt --snn trap.pt --data digits --out adaptive_inversion.json

Prints a table and writes JSON (bench/results/NAME). Real labelled data is read only to score.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import set_threads, write_results  # noqa: E402


def repulsion(first: torch.Tensor, first_labels: torch.Tensor, labels: torch.Tensor, weight: float):
    """``x -> weight * mean relu(cosine)`` between each image (labels in order) and the same class's
    round-1 images, both centred per image; the attacker's push away from its first answer."""
    centred = first - first.mean((1, 2, 3), keepdim=True)
    refs = F.normalize(centred.flatten(1), dim=1)
    same = (labels[:, None] == first_labels[None, :]).float()  # (N, M)
    same = same / same.sum(1, keepdim=True).clamp_min(1.0)

    def penalty(x: torch.Tensor) -> torch.Tensor:
        xc = F.normalize((x - x.mean((1, 2, 3), keepdim=True)).flatten(1), dim=1)
        cos = xc @ refs.to(x).T  # (N, M)
        return weight * (F.relu(cos) * same.to(x)).sum(1).mean()

    return penalty


def attack(snn_path: str, data: str, evaluator_spec: str | None, per_class: int, iterations: int, timesteps: int | None,
           weight: float, seed: int) -> dict:
    from privatesnn.artifact import load_snn
    from privatesnn.data import load_data
    from privatesnn.privacy.audit import load_evaluator, num_classes_of
    from privatesnn.privacy.inversion import InversionSettings, invert, score_inversion, snn_for_inversion
    from privatesnn.snn_eval import snn_accuracy_over_time

    art = load_snn(snn_path)
    graph = art.graph
    num_classes = num_classes_of(art)
    input_shape = tuple(graph.input.shape)
    ev = load_evaluator(evaluator_spec, data, num_classes, input_shape, None).module()
    for p in ev.parameters():
        p.requires_grad_(False)
    T = int(timesteps or art.timesteps)
    real = load_data(data)
    accs, _ = snn_accuracy_over_time(art, real, [T], 100, "cpu", seed, desc=f"{Path(snn_path).name} T={T}")
    net = snn_for_inversion(graph, T, 1.0)
    classes = list(range(num_classes))
    settings = dict(per_class=per_class, iterations=iterations, batch_size=per_class * num_classes, timesteps=T)
    t0 = time.time()
    first, labels = invert(net, classes, input_shape, InversionSettings(seed=seed, **settings), desc="round 1")
    second, labels2 = invert(net, classes, input_shape, InversionSettings(seed=seed + 1, **settings), desc="round 2",
                             regulariser=repulsion(first, labels, labels, weight))  # one batch, same order
    rounds = {"round1": score_inversion(ev, net, first, labels),
              "round2_repelled": score_inversion(ev, net, second, labels2)}
    best = torch.tensor([max(rounds["round1"]["per_class"][c], rounds["round2_repelled"]["per_class"][c])
                         for c in classes]).float()
    return {"snn": snn_path, "accuracy": accs[T], "timesteps": T, **rounds,
            "best_of_two_per_class_mean": float(best.mean()), "seconds": round(time.time() - t0, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--snn", action="append", required=True, help="SNN artifact to attack (repeat)")
    p.add_argument("--data", default="digits", help="real labelled test data, used only to score")
    p.add_argument("--evaluator", default=None, help="independent evaluator (default: the data's, e.g. digits)")
    p.add_argument("--per-class", type=int, default=8)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--timesteps", type=int, default=None, help="T of the inversion (default: the artifact's)")
    p.add_argument("--repel", type=float, default=2.0, help="weight W of the round-2 repulsion")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="adaptive_inversion.json", help="file name under bench/results")
    args = p.parse_args()
    if args.per_class <= 0 or args.iterations <= 0 or not args.repel >= 0:
        p.error("--per-class and --iterations must be > 0, --repel >= 0")
    for s in args.snn:
        if not Path(s).is_file():
            p.error(f"--snn {s}: no such file")
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    rows = [attack(s, args.data, args.evaluator, args.per_class, args.iterations, args.timesteps, args.repel,
                   args.seed) for s in args.snn]
    print(f"\n| SNN | accuracy | (c) round 1 | (c) round 2, repelled (W={args.repel:g}) | best of two per class |")
    print("|---|---|---|---|---|")
    for r in rows:
        a, b = r["round1"], r["round2_repelled"]
        print(f"| {Path(r['snn']).name} | {100 * r['accuracy']:.1f}% | {100 * a['evaluator']:.1f} ± {100 * a['se']:.1f} "
              f"[{100 * a['self']:.0f}%] | {100 * b['evaluator']:.1f} ± {100 * b['se']:.1f} [{100 * b['self']:.0f}%] | "
              f"{100 * r['best_of_two_per_class_mean']:.1f} |")
    print("(in brackets: share of the images the victim itself puts in their target class)")
    write_results(args.out, {"command": " ".join(sys.argv), "settings": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
