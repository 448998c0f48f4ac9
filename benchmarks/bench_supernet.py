"""Supernet cost: training time of a space's supernet and milliseconds per candidate score.

    python benchmarks/bench_supernet.py --space tiny --frames 8 --height 64 --width 64 --steps 2000 \
        --threads 2 --out benchmarks/results/supernet-tiny.json

Trains (or resumes, or finds finished in the cache) the space's pretrained backbone and its
supernet, then scores ``--candidates`` random architectures with ``supernet`` (inherited
weights) and ``supernet_ft`` (after F fine-tuning steps), timing each call; writes the
training record, the per-candidate timings (median, p10, p90) and the environment to JSON.
Training seconds are the supernet's own record (only the steps trained in this call are
timed; a cached supernet reports the seconds of the run that trained it).
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
    parser.add_argument("--pretrain-steps", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--heldout-clips", type=int, default=16)
    parser.add_argument("--eval-timesteps", default="50,200,400,600,800,950")
    parser.add_argument("--finetune-steps", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import torch

    from vidnas._env import fingerprint
    from vidnas.proxies import PretrainConfig, SupernetConfig, pretrain_backbone, train_supernet
    from vidnas.search_space import get_space

    torch.set_num_threads(args.threads)
    space = get_space(args.space, frames=args.frames, height=args.height, width=args.width,
                      width_mult=args.width_mult)
    started = time.perf_counter()
    backbone = pretrain_backbone(space.base, PretrainConfig(steps=args.pretrain_steps, data=args.data))
    backbone_seconds = time.perf_counter() - started
    config = SupernetConfig(steps=args.steps, batch_size=args.batch_size, data=args.data,
                            heldout_clips=args.heldout_clips,
                            eval_timesteps=tuple(int(t) for t in args.eval_timesteps.split(",")),
                            finetune_steps=args.finetune_steps)
    started = time.perf_counter()
    supernet = train_supernet(space, backbone, config, progress=lambda i, n: print(f"step {i}/{n}", flush=True)
                              if i % 200 == 0 else None)
    this_call = time.perf_counter() - started
    specs = space.random_specs(args.candidates, seed=123)
    supernet.score(specs[0])  # warm-up: held-out problems prepared once
    score_ms, ft_ms = [], []
    for spec in specs:
        t0 = time.perf_counter()
        supernet.score(spec)
        score_ms.append((time.perf_counter() - t0) * 1000)
    for spec in specs[: max(5, args.candidates // 10)]:
        t0 = time.perf_counter()
        supernet.score_finetuned(spec)
        ft_ms.append((time.perf_counter() - t0) * 1000)

    def summary(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {"median": statistics.median(values), "p10": ordered[int(0.1 * (len(values) - 1))],
                "p90": ordered[int(0.9 * (len(values) - 1))], "n": len(values)}

    result = {"space": args.space, "space_shape": dict(space.shape), "threads": args.threads,
              "backbone": backbone.meta, "backbone_seconds_this_call": backbone_seconds,
              "supernet": supernet.describe(), "supernet_seconds_this_call": this_call,
              "score_ms": summary(score_ms), "score_finetuned_ms": summary(ft_ms),
              "environment": fingerprint(threads=args.threads)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    d = result["supernet"]
    print(f"supernet: {d['step']} steps in {d['seconds']:.0f} s ({d['trainable_params']:,} shared weights); "
          f"score {result['score_ms']['median']:.1f} ms median per candidate "
          f"(p10-p90 {result['score_ms']['p10']:.1f}-{result['score_ms']['p90']:.1f}); supernet_ft "
          f"{result['score_finetuned_ms']['median']:.0f} ms")


if __name__ == "__main__":
    main()
