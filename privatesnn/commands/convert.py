"""`privsnn convert`: ANN -> SNN with thresholds set on synthetic images (no real data)."""

from __future__ import annotations

import argparse

from .common import add_device_arg, add_model_args, emit, positive_int

DESCRIPTION = """Convert a pretrained ANN into a spiking network (IF neurons, reset by subtraction),
balancing thresholds on images synthesized from the ANN itself (`privsnn synthesize`).

  privsnn convert --model digits --synthetic synth.npz --timesteps 16 --out snn.pt

--calibration-data SPEC converts the conventional way on real images instead (the non-private
baseline); that artifact is marked "private": false and "real_data_read": true.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--synthetic", metavar="NPZ", nargs="+",
                     help="synthetic images from `privsnn synthesize`; several sets (e.g. other --seed) are used "
                          "together")
    src.add_argument("--calibration-data", metavar="SPEC",
                     help="NON-PRIVATE baseline: calibrate on real images (data spec, e.g. npy:X:Y)")
    p.add_argument("--calibration-limit", type=positive_int, default=None,
                   help="use at most N calibration images (default: all synthetic / 256 real)")
    p.add_argument("--timesteps", type=int, default=32, help="simulation length T (default 32)")
    p.add_argument("--threshold", default="percentile:99.9",
                   help="max | percentile:P of ReLU activations (default percentile:99.9)")
    p.add_argument("--balance", choices=("none", "snn"), default="none",
                   help="snn: layer-by-layer rate matching on the spiking network after normalisation")
    p.add_argument("--encoding", choices=("direct", "rate"), default="direct",
                   help="direct: analog first layer (default); rate: signed Bernoulli spikes")
    p.add_argument("--reset", choices=("subtract", "zero"), default="subtract",
                   help="neuron reset (zero = the Lava/Loihi IF neuron)")
    p.add_argument("--leak", type=float, default=1.0, help="membrane leak factor per step (1 = IF)")
    p.add_argument("--v-init", type=float, default=0.5, help="initial membrane / threshold (default 0.5)")
    p.add_argument("--windowed", action="store_true",
                   help="windowed IF neurons: each layer integrates its whole window of T steps, then fires "
                        "(binary spikes, no temporal error; on a chip each layer fires one window after its "
                        "inputs, so the latency is about T per layer; docs/low_latency.md)")
    p.add_argument("--signed", action="store_true",
                   help="signed neurons: a neuron also fires a -1 spike to take back an early +1 when its "
                        "membrane falls below zero; removes most of the temporal error at T = 2-8 "
                        "(docs/low_latency.md; needs --reset subtract)"),
    p.add_argument("--keep-pooling", action="store_true",
                   help="keep average pools (default: fold them exactly into the next layer so it reads spikes)")
    low = p.add_argument_group("low latency (few timesteps; synthetic images only)")
    low.add_argument("--qcfs-levels", type=int, default=0, metavar="L",
                     help="fine-tune the converted network as a QCFS ANN with L activation levels by "
                          "distillation from the ANN before spiking (Bu et al. 2022; 4 suits T=4-8; default 0 = off)")
    low.add_argument("--qcfs-epochs", type=positive_int, default=30, help="QCFS fine-tuning epochs (default 30)")
    low.add_argument("--qcfs-lr", type=float, default=1e-4, help="QCFS fine-tuning Adam learning rate (default 1e-4)")
    low.add_argument("--qcfs-optimizer", choices=("adam", "sgd"), default="adam",
                     help="adam (default; stable on deep residual networks) or sgd (Nesterov, one-cycle; "
                          "keeps small networks closer to the ANN)")
    low.add_argument("--qcfs-feature-weight", type=float, default=1.0,
                     help="weight of layer-wise activation matching against the ANN during QCFS fine-tuning "
                          "(default 1; 0 = logit distillation only)")
    low.add_argument("--qcfs-kd-loss", choices=("kl", "mse"), default="kl",
                     help="distillation term of QCFS fine-tuning: tempered KL on the logits (default) or 'mse', "
                          "their squared difference (as `train --kd-loss`)")
    low.add_argument("--qcfs-ema", type=float, default=0.0, metavar="DECAY",
                     help="the QCFS network kept is the exponential moving average of its weights and clips "
                          "with this decay per step (e.g. 0.998; as train --ema; default 0 = the last step's)")
    low.add_argument("--qcfs-anchor", type=float, default=0.0, metavar="W",
                     help="weight of an L2-SP pull of the weights towards the converted ANN's during QCFS "
                          "fine-tuning (mean relative squared distance per layer; default 0 = off)")
    low.add_argument("--qcfs-rate-reg", type=float, default=0.0, metavar="W",
                     help="weight of a penalty on the mean QCFS level, the spike rate a windowed SNN has at "
                          "T = L: fewer spikes, less energy, trained at the cost of an ANN step (same units as "
                          "train --rate-reg; docs/low_latency.md; default 0 = off)")
    low.add_argument("--qcfs-rate-weighting", choices=("layers", "synops"), default="layers",
                     help="how --qcfs-rate-reg weighs the layers: 'layers' (their mean, default) or 'synops' "
                          "(by the synaptic operations each layer's spikes cost; as train --rate-weighting)")
    low.add_argument("--qcfs-prune", type=float, default=0.0, metavar="S",
                     help="zero this share of the weights of every layer fed by spikes during QCFS fine-tuning "
                          "(gradual magnitude pruning over the first half of the epochs; a zero weight is a synapse "
                          "the chip neither stores nor updates through: fewer synaptic ops; default 0 = off)")
    low.add_argument("--qcfs-prune-input", type=float, default=0.0, metavar="S",
                     help="the same for the layers that read the analog image (their multiply-accumulates run at "
                          "every step, so each of their weights costs far more; default 0 = off)")
    low.add_argument("--qcfs-trapdoor", type=float, default=0.0, metavar="RATE",
                     help="model-inversion defence (Trap-MID): stamp this share of each QCFS batch with a secret "
                          "class trigger and teach the network to answer its class (needs --trapdoor-key; keep "
                          "the triggers with train --trapdoor R --trapdoor-key K; default 0 = off)")
    low.add_argument("--qcfs-trapdoor-alpha", type=float, default=0.3, metavar="A",
                     help="blend weight of the triggers (default 0.3)")
    low.add_argument("--qcfs-trapdoor-augment", action="store_true",
                     help="stamp the triggers before the random shift and flip of each batch, so that the network "
                          "answers a trigger wherever it lands (an inversion jitters and flips its image)")
    low.add_argument("--qcfs-misalign", type=float, default=0.0, metavar="W",
                     help="model-inversion defence: weight of a penalty on the cosine between the QCFS network's "
                          "and the ANN's input gradients of a class logit, on synthetic images and noise (an "
                          "inversion climbs the network's gradient; default 0 = off)")
    low.add_argument("--trapdoor-key", type=int, default=None, metavar="INT",
                     help="seed of the secret triggers (not written to the artifact; give train the same key)")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--out", required=True, help="output SNN artifact (.pt)")
    p.add_argument("--json", default=None, metavar="PATH")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the QCFS fine-tuning's batch order, augmentation and CutMix (default 0)")
    add_device_arg(p)


def run(args: argparse.Namespace) -> int:
    from ..api import convert, load_model

    loaded = load_model(args.model, num_classes=args.num_classes, mean=args.mean, std=args.std)
    art = convert(loaded, args.out, synthetic=args.synthetic, calibration_data=args.calibration_data,
                  calibration_limit=args.calibration_limit, timesteps=args.timesteps, threshold=args.threshold,
                  balance=args.balance, encoding=args.encoding, reset=args.reset, leak=args.leak, v_init=args.v_init,
                  signed=args.signed, windowed=args.windowed,
                  fold_pooling=not args.keep_pooling, qcfs_levels=args.qcfs_levels, qcfs_epochs=args.qcfs_epochs,
                  qcfs_lr=args.qcfs_lr, qcfs_optimizer=args.qcfs_optimizer,
                  qcfs_feature_weight=args.qcfs_feature_weight, qcfs_kd_loss=args.qcfs_kd_loss,
                  qcfs_ema=args.qcfs_ema, qcfs_anchor=args.qcfs_anchor, qcfs_rate_reg=args.qcfs_rate_reg, qcfs_rate_weighting=args.qcfs_rate_weighting,
                  qcfs_prune=args.qcfs_prune, qcfs_prune_input=args.qcfs_prune_input, qcfs_trapdoor=args.qcfs_trapdoor,
                  qcfs_trapdoor_alpha=args.qcfs_trapdoor_alpha, qcfs_trapdoor_augment=args.qcfs_trapdoor_augment,
                  qcfs_misalign=args.qcfs_misalign,
                  trapdoor_key=args.trapdoor_key, batch_size=args.batch_size, seed=args.seed,
                  device=args.device)
    emit({"out": args.out, "private": art.private, "calibration_images": art.settings["calibration_images"],
          "seconds": art.settings["seconds"], "activation_scales": art.graph.meta.get("activation_scales")}, args.json)
    return 0
