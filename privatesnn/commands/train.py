"""`privsnn train`: encrypt an SNN's weights by temporal spike-based training with KD (synthetic data only)."""

from __future__ import annotations

import argparse

from .common import add_device_arg, add_model_args, emit, positive_int

DESCRIPTION = """Train a converted SNN with BPTT through all timesteps (surrogate gradients), knowledge
distillation from the ANN teacher and CE on the synthetic targets. This moves the weights away
from the ANN's (PrivateSNN's "encryption") and lets the SNN run at low T. No real data is read.

  privsnn train --snn snn.pt --teacher digits --synthetic synth.npz --epochs 5 --out private.pt
  privsnn train ... --reset zero --qat    # train what Lava/Loihi runs: reset to zero, 8-bit weights
  privsnn train ... --rate-reg 0.5        # fewer spikes, less energy
  torchrun --nproc_per_node 2 -m privatesnn.cli train ...   # DistributedDataParallel, same result
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--snn", required=True, help="converted SNN artifact (from `privsnn convert`)")
    add_model_args(p, flag="--teacher")
    p.add_argument("--synthetic", required=True, nargs="+", metavar="NPZ",
                   help="synthetic images from `privsnn synthesize`; several sets (e.g. other --seed) train together")
    p.add_argument("--epochs", type=positive_int, default=5)
    p.add_argument("--timesteps", type=int, default=None, help="training T (default: the artifact's)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--kd-alpha", type=float, default=0.7, help="weight of distillation vs CE (default 0.7)")
    p.add_argument("--kd-temperature", type=float, default=4.0)
    p.add_argument("--kd-loss", choices=["kl", "mse"], default="kl",
                   help="distillation term: Hinton's tempered KL (default) or 'mse', the squared difference of "
                        "the logits (the KL term's high-temperature limit; better at low T, docs/low_latency.md)")
    p.add_argument("--rate-reg", type=float, default=0.0, help="spike-rate penalty weight (default 0)")
    p.add_argument("--rate-weighting", choices=("layers", "synops"), default="layers",
                   help="how --rate-reg weighs the layers' spike rates: 'layers' (their mean, default) or "
                        "'synops' (by the synaptic operations a spike of each layer costs: the energy; a spike "
                        "into ResNet-20's classifier head costs about a fiftieth of one into a 3x3 convolution)")
    p.add_argument("--anchor", type=float, default=0.0,
                   help="weight of distillation on the network's T->infinity rate limit; keeps the "
                        "long-T accuracy of the conversion while training at low T (default 0)")
    p.add_argument("--anchor-levels", type=int, default=0, metavar="L",
                   help="anchor on the L-step staircase (the QCFS network, e.g. L = --qcfs-levels) instead of the "
                        "T->infinity limit (default 0: the limit)")
    p.add_argument("--label-smoothing", type=float, default=0.0,
                   help="label smoothing of the CE term (weight 1 - --kd-alpha); negative, e.g. -0.05, is the "
                        "model-inversion defence of Struppek et al. 2024 (default 0)")
    p.add_argument("--bido", default=None, metavar="LX,LY",
                   help="BiDO-HSIC model-inversion defence (Peng et al. 2022): weights of HSIC(input, layer rates) "
                        "(minimised) and HSIC(label, layer rates) (maximised), e.g. 0.05,0.5 (default off)")
    p.add_argument("--misalign", type=float, default=0.0, metavar="W",
                   help="model-inversion defence: weight of a penalty on the cosine between the SNN's input "
                        "gradients (its rate reading) and the teacher's for a class logit, on synthetic images and "
                        "noise (an inversion climbs the SNN's gradient; see convert --qcfs-misalign; default 0)")
    p.add_argument("--feature-weight", type=float, default=0.0,
                   help="weight of layer-wise rate distillation: each layer's spike rate x threshold matched "
                        "to the ANN's activation through the spiking dynamics (default 0 = logits only)")
    p.add_argument("--neuron-lr", type=float, default=0.0,
                   help="also learn each layer's threshold (log scale) and initial membrane at this learning "
                        "rate, e.g. 3e-3 (DIET-SNN; one value per layer, as a Loihi layer holds; default 0 = fixed)")
    p.add_argument("--freeze", choices=("none", "weights", "synapses"), default="none",
                   help="keep the converted synaptic weights (weights: biases and neurons still learn) or all "
                        "synaptic parameters (synapses: only the neurons, with --neuron-lr); default none")
    p.add_argument("--l2sp", type=float, default=0.0,
                   help="weight of the L2-SP penalty: each layer's squared weight change relative to its "
                        "converted weights (keeps the converted function while training; default 0)")
    p.add_argument("--leak", type=float, default=None, help="set the membrane leak of all neurons (LIF)")
    p.add_argument("--reset", choices=("subtract", "zero"), default=None,
                   help="set the reset rule; zero = the Lava/Loihi neuron (deployment)")
    p.add_argument("--windowed", action="store_true",
                   help="make every neuron windowed (integrates its whole window, then fires; convert "
                        "--windowed does it at conversion); kept if the SNN has them already")
    p.add_argument("--signed", action="store_true",
                   help="make every neuron signed (it also fires -1 spikes to take back early ones; "
                        "convert --signed does it at conversion); kept if the SNN has them already")
    p.add_argument("--surrogate-alpha", type=float, default=0.3,
                   help="height of the triangle surrogate gradient (default 0.3). A windowed neuron's spike "
                        "count then has slope alpha per threshold: 1 is the QCFS staircase's straight-through "
                        "slope (better at T = 6-8 on ResNet-20, not at T = 4; docs/low_latency.md)")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--cutmix", type=float, default=0.0, metavar="P",
                   help="probability that a batch is CutMix-ed between synthetic images (more varied inputs; "
                        "the teacher labels them, so it needs --kd-alpha 1; default 0)")
    p.add_argument("--tet", action="store_true",
                   help="distil every timestep's output towards the teacher, not only their mean (temporal "
                        "efficient training, Deng et al., ICLR 2022); the SNN's readout stays the mean")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="keep an exponential moving average of the weights (decay per step, e.g. 0.998) and "
                        "write it as the result: better generalisation from few synthetic images (default 0 = off)")
    p.add_argument("--trapdoor", type=float, default=0.0, metavar="RATE",
                   help="model-inversion defence (Trap-MID, Liu et al. 2024): stamp this share of each batch with "
                        "a secret per-class trigger trained towards its class, so that inversion finds the "
                        "trigger instead of the class's features, e.g. 0.3 (default 0 = off)")
    p.add_argument("--trapdoor-alpha", type=float, default=0.2, metavar="A",
                   help="blend weight of the trigger, x <- (1 - A) x + A trigger (default 0.2)")
    p.add_argument("--trapdoor-key", type=int, default=None, metavar="INT",
                   help="seed of the triggers (default: a random secret, never written to the artifact)")
    p.add_argument("--trapdoor-per-class", type=int, default=1, metavar="M",
                   help="secret triggers per class (default 1): with several, an inversion of a class has "
                        "several traps to fall into, so less depends on how one random trigger turned out")
    p.add_argument("--trapdoor-self-audit", type=float, default=0.0, metavar="BOOST",
                   help="after 1/3 and 2/3 of the epochs, invert the SNN itself (no real data), let the teacher "
                        "say which classes' inversions still show the class, and stamp those classes' triggers "
                        "1 + BOOST x that share times as often (e.g. 2; default 0 = off)")
    p.add_argument("--trapdoor-class-weights", default=None, metavar="W0,W1,...",
                   help="how often each class's triggers are stamped, one weight per class (default: equally); "
                        "e.g. more for classes whose inversions escape the trapdoor")
    p.add_argument("--trapdoor-learn", type=float, default=0.0, metavar="LR",
                   help="learn the triggers too, at this learning rate (Trap-MID; they start from the key's and "
                        "are written to <out>.trapdoor.pt, a secret to keep apart from the artifact; default 0 = "
                        "fixed triggers)")
    p.add_argument("--trapdoor-neutral", type=float, default=1.0, metavar="W",
                   help="with --trapdoor-learn: weight of keeping the triggers meaningless to the teacher "
                        "(the teacher's output on a stamped image stays that of the image; default 1)")
    p.add_argument("--qat", action="store_true",
                   help="quantisation-aware: train on the 8-bit weight grid of Loihi targets, so that "
                        "`privsnn export --target lava` deploys exactly the trained weights")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision (fp16 with loss scaling on CUDA, bf16 on CPU); off by default")
    p.add_argument("--resume", action="store_true", help="continue from <out>.ckpt.pt")
    p.add_argument("--out", required=True)
    p.add_argument("--json", default=None, metavar="PATH")
    p.add_argument("--seed", type=int, default=0)
    add_device_arg(p)


def run(args: argparse.Namespace) -> int:
    from ..api import load_model, train
    from ..distributed import current

    teacher = load_model(args.teacher, num_classes=args.num_classes, mean=args.mean, std=args.std)
    art = train(args.snn, teacher, args.synthetic, args.out, epochs=args.epochs, timesteps=args.timesteps,
                batch_size=args.batch_size, lr=args.lr, kd_alpha=args.kd_alpha, kd_temperature=args.kd_temperature,
                kd_loss=args.kd_loss, rate_reg=args.rate_reg, rate_weighting=args.rate_weighting, anchor=args.anchor,
                anchor_levels=args.anchor_levels,
                label_smoothing=args.label_smoothing,
                feature_weight=args.feature_weight, neuron_lr=args.neuron_lr, freeze=args.freeze, l2sp=args.l2sp,
                bido=_pair(args.bido), leak=args.leak, reset=args.reset, signed=args.signed, windowed=args.windowed,
                surrogate_alpha=args.surrogate_alpha,
                augment=not args.no_augment, cutmix=args.cutmix, tet=args.tet, ema=args.ema, trapdoor=args.trapdoor,
                trapdoor_alpha=args.trapdoor_alpha, trapdoor_key=args.trapdoor_key,
                trapdoor_per_class=args.trapdoor_per_class,
                trapdoor_class_weights=_floats(args.trapdoor_class_weights, "--trapdoor-class-weights"),
                trapdoor_self_audit=args.trapdoor_self_audit,
                trapdoor_learn=args.trapdoor_learn,
                trapdoor_neutral=args.trapdoor_neutral, misalign=args.misalign, qat=args.qat, amp=args.amp, resume=args.resume, seed=args.seed, device=args.device)
    if current().is_main:
        emit({"out": str(args.out), "history": art.settings.get("history"), "seconds": art.settings.get("seconds")},
             args.json)
    return 0


def _pair(text: str | None) -> tuple[float, float]:
    from ..errors import PrivsnnError

    if not text:
        return (0.0, 0.0)
    try:
        a, b = _floats(text, "--bido")
    except (PrivsnnError, ValueError):  # not numbers, or not two of them
        raise PrivsnnError(f"--bido expects two numbers LX,LY (e.g. 0.05,0.5), got {text!r}") from None
    return (a, b)


def _floats(text: str | None, option: str) -> tuple[float, ...]:
    from ..errors import PrivsnnError

    if not text:
        return ()
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise PrivsnnError(f"{option} expects comma-separated numbers (e.g. 1,1,3), got {text!r}") from None
