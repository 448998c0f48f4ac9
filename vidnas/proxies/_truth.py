"""The ground truth's records: one JSON file per (architecture, protocol, seed), resumable and shareable.

A *protocol* is everything that determines a truth run's result: the training settings
(:class:`TrainConfig` without its thread count) and the pretrained backbone it starts from
(whose id hashes the image network and its pretraining). Its id is a hash of both. A store
is a folder::

    STORE/<protocol_id>/protocol.json          what the protocol is (written once)
    STORE/<protocol_id>/<arch_id>-s<seed>.json one record per training run

Records are written atomically when their run ends, so a calibration killed part way keeps
every finished run and the next call trains only what is missing; a store committed with a
benchmark (``benchmarks/results/truth-store``) is reused by whoever runs it next. A record
holds the held-out loss (the truth), the shuffled-frames loss, the training losses (six
significant digits), its seconds and the spec itself, so it can be read without the space.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vidnas._errors import SpecError
from vidnas.proxies._denoise import TrainConfig, TrainResult, train_candidate
from vidnas.search_space import ArchSpec

__all__ = ["TruthStore", "default_store", "protocol_key", "train_truth_runs"]

FORMAT = "vidnas.truth"


def protocol_key(config: TrainConfig, backbone_id: str) -> dict[str, Any]:
    """What determines a truth run's result: its training settings and backbone (threads do not)."""
    train = config.to_dict()
    train.pop("threads", None)
    return {"train": train, "backbone_id": backbone_id}


def default_store() -> Path:
    from vidnas._cache import cache_dir

    return cache_dir() / "truth"


class TruthStore:
    """A folder of truth records for one protocol (see the module docstring)."""

    def __init__(self, root: str | Path, config: TrainConfig, backbone_id: str, *,
                 describe: dict[str, Any] | None = None) -> None:
        from vidnas._cache import config_hash

        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise SpecError("store", str(self.root), "is a file, not a folder of truth records")
        self.key = protocol_key(config, backbone_id)
        self.protocol_id = config_hash(self.key)
        self.folder = self.root / self.protocol_id
        self.describe = describe or {}

    def path(self, arch_id: str, seed: int) -> Path:
        return self.folder / f"{arch_id}-s{seed}.json"

    def get(self, arch_id: str, seed: int) -> dict[str, Any] | None:
        """The record of (arch_id, seed), or None; an unreadable file counts as missing."""
        path = self.path(arch_id, seed)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if record.get("format") != FORMAT or record.get("protocol_id") != self.protocol_id:
            return None
        return record

    def put(self, spec: ArchSpec, result: TrainResult, *, environment: dict[str, Any] | None = None) -> dict[str, Any]:
        record = {"format": FORMAT, "version": 1, "protocol_id": self.protocol_id, **result.to_dict(),
                  "train_losses": [float(f"{v:.6g}") for v in result.train_losses],
                  "spec": json.loads(spec.to_json()), "environment": environment or {}}
        self.folder.mkdir(parents=True, exist_ok=True)
        protocol = self.folder / "protocol.json"
        if not protocol.exists():
            _write_atomic(protocol, json.dumps({"format": "vidnas.truth_protocol", "protocol_id": self.protocol_id,
                                                **self.key, **self.describe}, indent=2))
        _write_atomic(self.path(spec.arch_id, result.seed), json.dumps(record))
        return record

    def records(self) -> list[dict[str, Any]]:
        """Every readable record of this protocol."""
        out = []
        for path in sorted(self.folder.glob("*-s*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if record.get("format") == FORMAT and record.get("protocol_id") == self.protocol_id:
                out.append(record)
        return out


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def as_result(record: dict[str, Any]) -> TrainResult:
    return TrainResult(record["arch_id"], record["seed"], record["steps"], tuple(record["train_losses"]),
                       record["heldout_loss"], record["heldout_shuffled_loss"], record["seconds"],
                       record.get("trained_params", 0), record.get("backbone"),
                       tuple(tuple(p) for p in record.get("curve", [])))


def _environment() -> dict[str, Any]:
    import platform

    import torch

    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine()}


def _truth_job(spec_json: str, config: dict[str, Any], seed: int, backbone_file: str, root: str) -> dict[str, Any]:
    """One ground-truth training in a worker process (one thread), recorded in the store."""
    import torch

    from vidnas.proxies._pretrain import PretrainedBackbone

    torch.set_num_threads(1)
    spec = ArchSpec.from_json(spec_json)
    backbone = PretrainedBackbone.load(Path(backbone_file))
    train = TrainConfig.from_dict(config)
    result = train_candidate(spec, train, seed=seed, backbone=backbone)
    return TruthStore(root, train, backbone.backbone_id).put(spec, result, environment=_environment())


def train_truth_runs(runs: Sequence[tuple[ArchSpec, int]], config: TrainConfig, backbone: Any, pretrain: Any, *,
                     store: str | Path | None = None, workers: int = 1,
                     progress: Callable[[int, int], None] | None = None) -> dict[tuple[str, int], TrainResult]:
    """Ground-truth training of every ``(spec, seed)`` in ``runs``, reusing the store's records;
    ``(arch_id, seed) -> TrainResult``. ``workers`` > 1 trains in that many processes of one
    thread each; every finished run is recorded at once, so a killed call loses only the runs
    in flight."""
    from vidnas.proxies._pretrain import backbone_path, image_spec

    truth = TruthStore(store or default_store(), config, backbone.backbone_id)
    out: dict[tuple[str, int], TrainResult] = {}
    todo: list[tuple[ArchSpec, int]] = []
    unique = {(spec.arch_id, seed): (spec, seed) for spec, seed in runs}
    for spec, seed in unique.values():
        record = truth.get(spec.arch_id, seed)
        if record is not None:
            out[(spec.arch_id, seed)] = as_result(record)
        else:
            todo.append((spec, seed))
    done, total = len(out), len(out) + len(todo)
    if progress:
        progress(done, total)
    if workers > 1 and len(todo) > 1:
        import concurrent.futures
        import multiprocessing

        backbone_file = backbone_path(image_spec(todo[0][0]), pretrain)
        if not backbone_file.exists():
            backbone.save(backbone_file)
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(_truth_job, spec.to_json(), config.to_dict(), seed, str(backbone_file),
                                   str(truth.root)) for spec, seed in todo]
            for future in concurrent.futures.as_completed(futures):
                record = future.result()
                out[(record["arch_id"], record["seed"])] = as_result(record)
                done += 1
                if progress:
                    progress(done, total)
        return out
    for spec, seed in todo:
        result = train_candidate(spec, config, seed=seed, backbone=backbone)
        truth.put(spec, result, environment=_environment())
        out[(spec.arch_id, seed)] = result
        done += 1
        if progress:
            progress(done, total)
    return out
