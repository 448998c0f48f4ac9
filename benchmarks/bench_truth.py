"""The ground truth's reliability at a training budget, and the supernet and count signals against it.

    python benchmarks/bench_truth.py --n 12 --steps 1200 --workers 2 \
        --supernet-dir DIR --out benchmarks/results/truth-tiny-k1200.json

The first ``--n`` architectures of ``stratified_sample(tiny at 8x64x64, 60, seed 0)`` are each
trained twice (training seeds 0 and 1) with the ground truth's protocol: the space's spatial
backbone pretrained as an image denoiser (``--pretrain-steps``, cached), frozen; the
architecture's own slot layers at identity initialisation, trained ``--steps`` Adam steps
(cosine schedule) on procedural clips; truth = held-out denoising loss at fixed timesteps and
noise (``--heldout-clips`` clips). Runs are cached per (architecture, seed, settings), so an
interrupted benchmark resumes. Reported: Kendall tau between the two seeds over the ``n``
architectures, with its bootstrap interval; the median seed-to-seed difference and the spread
across architectures (both in % of the loss); and, against the two-seed mean, Kendall tau of
FLOPs, params and (``--supernet-dir``: a trained supernet of the same space, as
``vidnas proxies supernet`` writes it) the supernet score at several held-out sizes, with its
seconds per candidate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--heldout-clips", type=int, default=32)
    parser.add_argument("--train-clips", type=int, default=4096)
    parser.add_argument("--pretrain-steps", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--supernet-dir", type=Path, default=None)
    parser.add_argument("--supernet-steps", type=int, default=2000, help="the supernet's training steps")
    parser.add_argument("--score-clips", default="32,4,1", help="held-out clip counts the supernet is scored with")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import torch

    from vidnas._env import fingerprint
    from vidnas._stats import bootstrap_interval, kendall
    from vidnas.proxies import (
        PretrainConfig,
        Supernet,
        SupernetConfig,
        TrainConfig,
        pretrain_backbone,
        stratified_sample,
        train_truths,
    )
    from vidnas.search_space import count_spec, get_space

    torch.set_num_threads(1)
    space = get_space("tiny", frames=8, height=64, width=64)
    pretrain = PretrainConfig(steps=args.pretrain_steps, batch_size=8)
    backbone = pretrain_backbone(space.base, pretrain)
    specs = stratified_sample(space, 60, seed=0)[: args.n]
    train = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, heldout_clips=args.heldout_clips,
                        train_clips=args.train_clips, data="shapes")
    started = time.perf_counter()
    results = train_truths(specs, train, [0, 1], backbone, pretrain, workers=args.workers,
                           progress=lambda i, k: print(f"{i}/{k} runs, {time.perf_counter() - started:.0f} s",
                                                       flush=True))
    seconds = time.perf_counter() - started
    a = [results[(s.arch_id, 0)].heldout_loss for s in specs]
    b = [results[(s.arch_id, 1)].heldout_loss for s in specs]
    truth = [(x + y) / 2 for x, y in zip(a, b)]
    out = {"space": "tiny", "space_shape": dict(space.shape), "n": args.n, "train": train.to_dict(),
           "pretrain": pretrain.key(), "seconds_this_call": seconds,
           "architectures": [{"arch_id": s.arch_id, "seed0": x, "seed1": y} for s, x, y in zip(specs, a, b)],
           "seed_tau": kendall(a, b), "seed_tau_ci": bootstrap_interval(a, b, kendall),
           "seed_difference_pct_median": statistics.median(abs(x - y) / x * 100 for x, y in zip(a, b)),
           "spread_pct": (max(truth) - min(truth)) / statistics.mean(truth) * 100, "signals": {}}
    counts = [count_spec(s) for s in specs]
    for name, values in (("flops", [-c.flops for c in counts]), ("params", [-c.params for c in counts])):
        out["signals"][name] = {"tau": kendall(values, truth), "ci": bootstrap_interval(values, truth, kendall),
                                "orientation": "more is better (negated: lower loss)"}
    if args.supernet_dir is not None:
        for clips in (int(c) for c in args.score_clips.split(",")):
            supernet = Supernet(space, backbone, SupernetConfig(steps=args.supernet_steps, batch_size=8,
                                                                heldout_clips=clips))
            supernet.load(args.supernet_dir / "supernet.safetensors")
            supernet.score(specs[0])  # warm-up: held-out problems prepared once
            t0 = time.perf_counter()
            scores = [supernet.score(s) for s in specs]
            per = (time.perf_counter() - t0) / len(specs)
            out["signals"][f"supernet ({clips} held-out clips)"] = {
                "tau": kendall(scores, truth), "ci": bootstrap_interval(scores, truth, kendall),
                "seconds_per_candidate": per}
    out["environment"] = fingerprint(threads=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k not in ("architectures", "environment", "train")},
                     indent=1, default=str))


if __name__ == "__main__":
    main()
