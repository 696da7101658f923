"""#11 probe: where does a low-T SNN disagree with its ANN? (not a test; reads real images, analysis only)

Top-1 agreement of an SNN with the ANN at T steps on: the synthetic set it was trained on, a held-out
synthetic set (another seed, same settings), and real CIFAR-10 images (the first N training images of
`../shared/data/cifar10/train4000_*`); then, on the first N real test images, the agreement by quartile
of the ANN's top-2 logit margin and per ANN class. A gap between held-out synthetic and real agreement is
a domain gap (more synthetic images of the same kind will not close it); a gap between training and
held-out synthetic agreement would be overfitting.

    python bench/snn_disagreements.py --snn private_t8.pt --trained synth.npz --heldout synth_s1.npz --out d.json
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import IMAGENET_MEAN, IMAGENET_STD, RESNET20, SHARED, set_threads  # noqa: E402
from privatesnn.artifact import load_snn  # noqa: E402
from privatesnn.io_utils import write_json  # noqa: E402
from privatesnn.models import load_model  # noqa: E402
from privatesnn.snn import SpikingNetwork  # noqa: E402
from privatesnn.synthesis.store import load_synthetic  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--snn", required=True)
p.add_argument("--trained", required=True, help="the synthetic set the SNN was trained on")
p.add_argument("--heldout", required=True, help="a synthetic set it never saw (another seed)")
p.add_argument("--timesteps", type=int, default=8)
p.add_argument("--num", type=int, default=512, help="images per set (default 512)")
p.add_argument("--threads", type=int, default=1)
p.add_argument("--out", default=None)
args = p.parse_args()
set_threads(args.threads)

ann = load_model(f"resnet20:{RESNET20}", mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)).module().eval()
snn = SpikingNetwork(load_snn(args.snn).graph).eval()


def real(name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(SHARED / "cifar10" / name)[:args.num]).permute(0, 3, 1, 2).float() / 255


@torch.no_grad()
def logits(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return ann(x), torch.cat([snn(x[i:i + 128], args.timesteps) for i in range(0, len(x), 128)])


agreement = {}
sets = {"trained synthetic": load_synthetic(args.trained).images[:args.num].float(),
        "held-out synthetic": load_synthetic(args.heldout).images[:args.num].float(),
        "real (train4000)": real("train4000_x.npy")}
for name, x in sets.items():
    t, s = logits(x)
    agreement[name] = round(float((t.argmax(1) == s.argmax(1)).float().mean()), 4)
t, s = logits(real("test_x.npy"))
same = (t.argmax(1) == s.argmax(1)).float()
top2 = t.topk(2, dim=1).values
margin = top2[:, 0] - top2[:, 1]
quartile = torch.bucketize(margin, torch.quantile(margin, torch.tensor([0.25, 0.5, 0.75])))
by_margin = [round(float(same[quartile == q].mean()), 4) for q in range(4)]
by_class = {int(c): round(float(same[t.argmax(1) == c].mean()), 4) for c in t.argmax(1).unique()}
print(f"agreement with the ANN at T = {args.timesteps}: " + ", ".join(f"{k} {v:.3f}" for k, v in agreement.items()))
print("real test images, agreement by quartile of the ANN's top-2 margin (lowest first):", by_margin)
print("real test images, agreement by ANN class:", by_class)
if args.out:
    write_json(args.out, {"snn": Path(args.snn).name, "timesteps": args.timesteps, "images_per_set": args.num,
                          "agreement": agreement, "real_test_agreement_by_margin_quartile": by_margin,
                          "real_test_agreement_by_class": by_class})
