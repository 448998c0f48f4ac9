"""The ground truth of a calibration, trained ahead of it: resumable, one record per run.

    python benchmarks/bench_truth.py --space tiny --frames 8 --height 64 --width 64 --n 60 \
        --second-seed-n 20 --workers 2 --store benchmarks/results/truth-store \
        --out benchmarks/results/truth-tiny-k1200-n60.json

Trains exactly the runs ``vidnas proxies calibrate`` with the same arguments would train
(``stratified_sample(space, n, seed)``; every architecture with training seed ``seed``, the
first ``--second-seed-n`` also with ``seed + 1``; the protocol of the calibration's defaults:
K = 1200 Adam steps, batch 4, lr 2e-3, cosine, 4,096 training clips, 32 held-out clips, on the
space's backbone pretrained 1,000 steps at batch 8), recording each in the truth store as it
finishes, so a killed run loses only the runs in flight and the calibration that follows
trains nothing. Reports the truth's reliability (Kendall tau between the two seeds on the
subset, bootstrap interval) and the seconds per run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    from _common import add_space_args

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_space_args(parser)
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--second-seed-n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--heldout-clips", type=int, default=32)
    parser.add_argument("--train-clips", type=int, default=4096)
    parser.add_argument("--pretrain-steps", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", type=Path, default=Path("benchmarks/results/truth-store"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import torch

    from vidnas._env import fingerprint
    from vidnas._stats import bootstrap_interval, kendall
    from vidnas.proxies import PretrainConfig, TrainConfig, pretrain_backbone, stratified_sample
    from vidnas.proxies._calibration import truth_runs
    from vidnas.proxies._truth import TruthStore, train_truth_runs
    from vidnas.search_space import get_space

    torch.set_num_threads(1)
    space = get_space(args.space, frames=args.frames, height=args.height, width=args.width,
                      width_mult=args.width_mult)
    pretrain = PretrainConfig(steps=args.pretrain_steps, batch_size=8, data=args.data)
    backbone = pretrain_backbone(space.base, pretrain)
    specs = stratified_sample(space, args.n, seed=args.seed)
    train = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, heldout_clips=args.heldout_clips,
                        train_clips=args.train_clips, data=args.data)
    started = time.perf_counter()
    runs = truth_runs(specs, args.seed, args.second_seed_n)
    results = train_truth_runs(runs, train, backbone, pretrain, store=args.store, workers=args.workers,
                               progress=lambda i, k: print(f"{i}/{k} runs, {time.perf_counter() - started:.0f} s",
                                                           flush=True))
    subset = specs[: args.second_seed_n]
    a = [results[(s.arch_id, args.seed)].heldout_loss for s in subset]
    b = [results[(s.arch_id, args.seed + 1)].heldout_loss for s in subset]
    store = TruthStore(args.store, train, backbone.backbone_id)
    out = {"space": args.space, "space_shape": dict(space.shape), "n": args.n, "second_seed_n": args.second_seed_n,
           "train": train.to_dict(), "pretrain": pretrain.key(), "backbone_id": backbone.backbone_id,
           "protocol_id": store.protocol_id, "store": str(args.store),
           "seconds_this_call": time.perf_counter() - started,
           "seconds_per_run_median": statistics.median(r.seconds for r in results.values()),
           "seed_tau": kendall(a, b), "seed_tau_ci": bootstrap_interval(a, b, kendall),
           "seed_difference_pct_median": statistics.median(abs(x - y) / x * 100 for x, y in zip(a, b)),
           "environment": fingerprint(threads=1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k not in ("environment", "train")}, indent=1, default=str))


if __name__ == "__main__":
    main()
