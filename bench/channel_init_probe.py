"""#11 probe: BPTT at T = 8 with initial membranes learnt per channel instead of per layer (not a test).

Starts from a private SNN artifact (e.g. the T = 8 SNN of docs/low_latency.md), learns each layer's
threshold (per layer, as `train --neuron-lr`) and initial membranes (one per channel with
`--mode per_channel`, one per layer with `--mode per_layer`, the control) together with the weights
(`--lr`) by KD-only BPTT at T = 8 on a synthetic set, and evaluates on all real CIFAR-10 test images at
T = 4, 8, 16. Writes --out (JSON) and prints the accuracies. The per-channel membranes are a probe
only (a Loihi-style layer holds one initial value, and export keeps one per layer): a gain here would
be the reason to carry them through the chip plan, NIR and Lava.

    python bench/channel_init_probe.py --snn private_t8.pt --synthetic synth.npz --mode per_channel --out pc.json
    python bench/channel_init_probe.py --snn private_t8.pt --synthetic synth.npz --mode per_layer --out pl.json
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
import torch.nn as nn  # noqa: E402

from common import RESNET20, SHARED, set_threads  # noqa: E402
from privatesnn.artifact import load_snn  # noqa: E402
from privatesnn.layers import module_key  # noqa: E402
from privatesnn.models import load_model  # noqa: E402
from privatesnn.neurons import SpikingNeuron  # noqa: E402
from privatesnn.snn import SpikingNetwork  # noqa: E402
from privatesnn.synthesis.store import load_synthetic  # noqa: E402
from privatesnn.training import augment, distillation_loss  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--snn", required=True)
p.add_argument("--synthetic", required=True)
p.add_argument("--mode", choices=["per_channel", "per_layer"], required=True)
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--lr", type=float, default=1e-4)
p.add_argument("--neuron-lr", type=float, default=1e-2)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--limit", type=int, default=None, help="evaluate on the first N test images (default: all)")
p.add_argument("--out", required=True)
args = p.parse_args()
set_threads(args.threads)
start, mode, epochs, lr, nlr, out = args.snn, args.mode, args.epochs, args.lr, args.neuron_lr, args.out
torch.manual_seed(0)
T = 8
graph = load_snn(start).graph
net = SpikingNetwork(graph, T)
for node in graph.neurons():
    cell = net.neurons[module_key(node.name)]
    cell.make_trainable()
    if mode == "per_channel":
        shape = (node.shape[0],) + (1,) * (len(node.shape) - 1)
        cell.v_init_fraction = nn.Parameter(torch.full(shape, float(cell.v_init)))


_trainable_forward = SpikingNeuron.forward


def _inference_with_tensor_v0(self, currents, timesteps):
    """Evaluation through the trainable path, which broadcasts a per-channel initial membrane (the
    inference path holds one float per layer); detached, so no graph outlives a layer."""
    with torch.enable_grad():
        return _trainable_forward(self, currents, timesteps).detach()


SpikingNeuron._forward_inference = _inference_with_tensor_v0
M = dict(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
teacher = load_model(f"resnet20:{RESNET20}", **M).module().eval()
synth = load_synthetic(args.synthetic)
images, labels = synth.images, synth.labels
neuron_ids = {id(p) for p in net.neurons.parameters()}
opt = torch.optim.Adam([{"params": [p for p in net.parameters() if id(p) not in neuron_ids]},
                        {"params": list(net.neurons.parameters()), "lr": nlr, "weight_decay": 0.0}], lr=lr)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
x_test = torch.from_numpy(np.load(SHARED / "cifar10" / "test_x.npy")).permute(0, 3, 1, 2).float() / 255
y_test = torch.from_numpy(np.load(SHARED / "cifar10" / "test_y.npy")).long()
x_test, y_test = x_test[:args.limit], y_test[:args.limit]


def evaluate():
    net.eval()
    res = {}
    with torch.no_grad():
        for t in (4, 8, 16):
            correct = 0
            for i in range(0, len(x_test), 100):
                correct += int((net(x_test[i:i + 100], t).argmax(1) == y_test[i:i + 100]).sum())
            res[t] = correct / len(x_test)
    return res


log = {"start": Path(start).name, "mode": mode, "epochs": epochs, "lr": lr, "neuron_lr": nlr, "history": []}
for epoch in range(epochs):
    gen = torch.Generator().manual_seed(epoch)
    perm = torch.randperm(len(images), generator=gen)
    net.train()
    agree = seen = 0
    t0 = time.time()
    for i in range(0, len(images), 32):
        idx = perm[i:i + 32]
        x = augment(images[idx], gen)
        with torch.no_grad():
            t_logits = teacher(x)
        logits = net(x, T)
        loss = distillation_loss(logits, t_logits, labels[idx], 1.0, 4.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for cell in net.neurons.values():
                cell.v_init_fraction.clamp_(0.0, 0.999)
        agree += int((logits.argmax(1) == t_logits.argmax(1)).sum())
        seen += len(idx)
    sched.step()
    log["history"].append({"epoch": epoch + 1, "agreement": agree / seen, "seconds": time.time() - t0})
    print(log["history"][-1], flush=True)
log["accuracy"] = evaluate()
vi = {k: c.v_init_fraction.detach().flatten().tolist() for k, c in net.neurons.items()}
log["v_init_spread"] = {k: [min(v), float(np.mean(v)), max(v)] for k, v in vi.items()}
print(log["accuracy"], flush=True)
json.dump(log, open(out, "w"), indent=1)
