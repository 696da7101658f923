"""#11 probe: is the training data what holds low-T BPTT back? (not a test; not the private path)

Runs the bench's low-T encryption recipe (KD-only BPTT, `train_snn`, the same settings as `privsnn train
--kd-alpha 1 --neuron-lr ...`) from one SNN artifact on one of two image sources with the same number of
optimisation steps, and evaluates on all real CIFAR-10 test images:

- `--source synthetic`: a synthetic set (the private path's data);
- `--source real`: the 4000 real CIFAR-10 *training* images of ../shared/data/cifar10/train4000_*,
  unlabelled (the teacher's outputs are the only targets, as for synthetic images). This is an upper
  bound for what better synthetic images could give: it reads real data and is never the private path.

The gap between the two, at the same steps, says how much of the gap to the ANN is the data's and how
much the optimisation's (steps, T, the SNN itself).

    python bench/data_bound_probe.py --snn qcfs_l4_cal8.pt --source real --steps 512 --out real.json
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import IMAGENET_MEAN, IMAGENET_STD, RESNET20, SHARED, set_threads  # noqa: E402
from privatesnn.artifact import load_snn  # noqa: E402
from privatesnn.io_utils import torch_save, write_json  # noqa: E402
from privatesnn.models import load_model  # noqa: E402
from privatesnn.snn import SpikingNetwork  # noqa: E402
from privatesnn.synthesis.store import load_synthetic  # noqa: E402
from privatesnn.training import TrainSettings, train_snn  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--snn", required=True, help="start SNN artifact (e.g. QCFS L = 4 calibrated at T = 8)")
p.add_argument("--source", choices=["synthetic", "real"], required=True)
p.add_argument("--synthetic", nargs="+", help="synthetic set(s) for --source synthetic")
p.add_argument("--num", type=int, default=None, help="use only the first N images of the source")
p.add_argument("--steps", type=int, default=512, help="optimisation steps (batches of --batch-size)")
p.add_argument("--timesteps", type=int, default=8)
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--lr", type=float, default=3e-4)
p.add_argument("--neuron-lr", type=float, default=1e-2)
p.add_argument("--kd-loss", choices=["kl", "mse"], default="kl")
p.add_argument("--kd-temperature", type=float, default=4.0)
p.add_argument("--ema", type=float, default=0.0, help="weight average decay per step (train --ema)")
p.add_argument("--eval-timesteps", default="4,8,16")
p.add_argument("--threads", type=int, default=1)
p.add_argument("--save", default=None, help="also write the trained SNN's graph here (torch state, for inspection)")
p.add_argument("--out", required=True)
args = p.parse_args()
set_threads(args.threads)
torch.manual_seed(0)

teacher = load_model(f"resnet20:{RESNET20}", mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)).module().eval()
if args.source == "real":
    images = torch.from_numpy(np.load(SHARED / "cifar10" / "train4000_x.npy")).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():  # unlabelled: the teacher's predictions stand in for labels (KD-only anyway)
        labels = torch.cat([teacher(images[i:i + 500]).argmax(1) for i in range(0, len(images), 500)])
else:
    sets = [load_synthetic(s) for s in args.synthetic]
    images = torch.cat([s.images for s in sets])
    labels = torch.cat([s.labels for s in sets])
images, labels = images[:args.num], labels[:args.num]
epochs = max(1, round(args.steps * args.batch_size / len(images)))
settings = TrainSettings(epochs=epochs, timesteps=args.timesteps, batch_size=args.batch_size, lr=args.lr,
                         kd_alpha=1.0, neuron_lr=args.neuron_lr, seed=0,
                         kd_loss=args.kd_loss, kd_temperature=args.kd_temperature, ema=args.ema)
t0 = time.time()
graph = train_snn(load_snn(args.snn).graph, teacher, images, labels, settings,
                  checkpoint=Path(args.out).with_suffix(".ckpt.pt"))
train_s = time.time() - t0
x_test = torch.from_numpy(np.load(SHARED / "cifar10" / "test_x.npy")).permute(0, 3, 1, 2).float() / 255
y_test = torch.from_numpy(np.load(SHARED / "cifar10" / "test_y.npy")).long()
accuracy = {}
with torch.no_grad():
    for t in map(int, args.eval_timesteps.split(",")):
        net = SpikingNetwork(graph, t).eval()
        correct = sum(int((net(x_test[i:i + 100]).argmax(1) == y_test[i:i + 100]).sum()) for i in range(0, len(x_test), 100))
        accuracy[t] = correct / len(x_test)
log = {"start": Path(args.snn).name, "source": args.source, "images": len(images), "epochs": epochs,
       "steps": epochs * -(-len(images) // args.batch_size), "timesteps": args.timesteps, "lr": args.lr,
       "neuron_lr": args.neuron_lr, "kd_loss": args.kd_loss, "ema": args.ema,
       "kd_temperature": args.kd_temperature, "train_seconds": round(train_s), "accuracy": accuracy,
       "history": [{k: h[k] for k in ("epoch", "teacher_agreement") if k in h} for h in settings.history]}
print(json.dumps(log, indent=1), flush=True)
write_json(args.out, log)  # atomic: no half-written result if the run is stopped
if args.save:
    torch_save(args.save, graph.to_dict())
