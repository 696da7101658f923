"""Teacher-labelled crops of public photographs as extra training images (a negative result kept
reproducible; see docs/low_latency.md). Not part of the private path's defaults.

Random resized crops (0.5-30% of the area, aspect 3/4-4/3), flips, colour jitter and 10% greyscale
of scikit-learn's two bundled sample photographs (``sklearn.datasets.load_sample_images``: public,
not CIFAR), each labelled with the teacher's argmax: the single-image distillation data of Asano &
Saeed (ICLR 2023). Written in the synthetic-set format with the teacher's fingerprint, so `privsnn
train --synthetic synth.npz crops.npz` accepts it; the manifest says what was read.

    python bench/public_crops.py --num 2048 --out runs/exp12/crops.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import IMAGENET_NORM, RESNET20  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=f"resnet20:{RESNET20}")
    p.add_argument("--num", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    import numpy as np
    import torch
    import torchvision.transforms as T
    from sklearn.datasets import load_sample_images

    from privatesnn.manifest import Manifest
    from privatesnn.models import load_model
    from privatesnn.synthesis import save_synthetic

    mean, std = IMAGENET_NORM[1], IMAGENET_NORM[3]
    loaded = load_model(args.model, mean=mean, std=std)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    photos = [torch.from_numpy(np.array(i)).permute(2, 0, 1).float() / 255 for i in load_sample_images().images]
    size = loaded.input_shape[1:]
    aug = T.Compose([T.RandomResizedCrop(size, scale=(0.005, 0.3), ratio=(0.75, 1.333), antialias=True),
                     T.RandomHorizontalFlip(), T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                     T.RandomGrayscale(0.1)])
    x = torch.stack([aug(photos[rng.integers(len(photos))]) for _ in range(args.num)]).clamp(0, 1)
    with torch.no_grad():
        prob = torch.cat([torch.softmax(loaded.module()(x[i:i + 500]), 1) for i in range(0, len(x), 500)])
    labels = prob.argmax(1)
    results = {"mean_teacher_confidence": float(prob.max(1).values.mean()),
               "label_histogram": torch.bincount(labels, minlength=loaded.num_classes).tolist()}
    settings = {"method": "public-crops", "num": args.num, "seed": args.seed,
                "source": "sklearn.datasets.load_sample_images (china.jpg, flower.jpg)"}
    meta = {"method": "public-crops", "model": loaded.describe(), "num_classes": loaded.num_classes,
            "input_shape": list(loaded.input_shape), "settings": settings, "results": results}
    save_synthetic(args.out, x, labels, meta)
    Manifest(kind="synthetic", command="bench/public_crops.py", settings={**settings, **results},
             inputs={"model": loaded.sha256}, real_data_read=False, private=True, seed=args.seed,
             parents=[{"role": "model", **loaded.describe()}]).write_for(args.out)
    print(f"wrote {args.out}: {args.num} crops, mean teacher confidence {results['mean_teacher_confidence']:.2f}, "
          f"labels {results['label_histogram']}")


if __name__ == "__main__":
    main()
