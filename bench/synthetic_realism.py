"""#11 probe: how far is each synthetic set from real images? (not a test; reads real images, analysis only)

For each synthetic set (and, as references, a second half of the real images and a uniform-noise set):
the Frechet distance between the ANN's penultimate features of the set and of real CIFAR-10 training
images (`../shared/data/cifar10/train4000_*`, unlabelled; an FID computed in the ANN's own 64-d feature
space instead of Inception's), the images' mean squared neighbour difference (TV, real images: about
0.019) and their colour-channel correlation. A cheap screen before an hour of BPTT: the session-14
real-image bound says that the T = 8 gap is the synthetic images', and this says which are nearer real.

    python bench/synthetic_realism.py runs/exp25/synth.npz other.npz --out realism.json
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import IMAGENET_MEAN, IMAGENET_STD, RESNET20, SHARED, set_threads  # noqa: E402
from privatesnn.io_utils import write_json  # noqa: E402
from privatesnn.models import load_model  # noqa: E402
from privatesnn.synthesis.store import load_synthetic  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("synthetic", nargs="+", help="synthetic sets (npz written by privsnn synthesize)")
p.add_argument("--num", type=int, default=2048, help="images per set (default 2048)")
p.add_argument("--threads", type=int, default=1)
p.add_argument("--out", default=None, help="JSON results")
args = p.parse_args()
set_threads(args.threads)

ann = load_model(f"resnet20:{RESNET20}", mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)).module().eval()
readout = [m for m in ann.modules() if isinstance(m, torch.nn.Linear)][-1]
captured: list[torch.Tensor] = []
readout.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0].detach()))


def features(x: torch.Tensor) -> np.ndarray:
    captured.clear()
    with torch.no_grad():
        for i in range(0, len(x), 256):
            ann(x[i:i + 256])
    return torch.cat(captured).double().numpy()


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    m1, m2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr sqrt(s1 s2) = sum of the square roots of its eigenvalues (real, >= 0 for two covariances)
    root_trace = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(min=0)).sum()
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * root_trace)


def describe(name: str, x: torch.Tensor, ref: np.ndarray) -> dict:
    tv = ((x[:, :, 1:] - x[:, :, :-1]) ** 2).mean() + ((x[..., 1:] - x[..., :-1]) ** 2).mean()
    corr = torch.corrcoef(x.permute(1, 0, 2, 3).reshape(x.shape[1], -1))
    colour = float(corr[0, 1:].mean()) if x.shape[1] == 3 else None
    return {"set": name, "images": len(x), "frechet_ann_features": round(frechet(ref, features(x)), 3),
            "tv": round(float(tv), 4), "colour_correlation": None if colour is None else round(colour, 3)}


real = torch.from_numpy(np.load(SHARED / "cifar10" / "train4000_x.npy")).permute(0, 3, 1, 2).float() / 255
half = len(real) // 2
num = min(args.num, half)
ref = features(real[:num])
rows = [describe("real (other half of train4000)", real[half:half + num], ref),
        describe("uniform noise", torch.rand(num, *real.shape[1:], generator=torch.Generator().manual_seed(0)), ref)]
for path in args.synthetic:
    rows.append(describe(Path(path).name, load_synthetic(path).images[:num].float(), ref))
print("| set | images | Frechet (ANN features) | TV | colour corr |\n|---|---|---|---|---|")
for r in rows:
    print(f"| {r['set']} | {r['images']} | {r['frechet_ann_features']} | {r['tv']} | {r['colour_correlation']} |")
if args.out:
    write_json(args.out, {"reference": f"first {num} of ../shared/data/cifar10/train4000_x.npy", "rows": rows})
