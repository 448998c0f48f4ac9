"""A weight-sharing supernet (one-shot) over a whole search space, on the frozen pretrained backbone.

One network holds every option of every slot of a space: the space's image network (the
pretrained, frozen spatial backbone; see ``_pretrain``) whose slot units are replaced by
:class:`SuperSlot` modules. A super slot holds one module per *sharing key* of the op
registry's sharing rules (``search_space._sharing``: kernel 3 inside kernel 5, a funnel as a
slice, temporal multiscaling on the same weights) and runs the active choice by calling a
standalone unit module of that choice with a cut of the shared weights
(``torch.func.functional_call``), so gradients of every variant land on the shared weights.
It is written against the spec's slots, ``build_network`` and the op registry only: any
backbone family, and any registered op, gets it.

Training samples one path per step (a choice per slot group): ``uniform`` (single-path
one-shot) or ``fair`` (every option of a group trained equally often: each group walks a
fresh random permutation of its options). All randomness of step ``s`` (path, clips,
timesteps, noise) is drawn from a generator seeded by ``(seed, s)``, so a run resumed from a
checkpoint continues exactly as an uninterrupted run would. Checkpoints (weights, optimiser
state, step) are safetensors written atomically.

A candidate's scores: ``supernet``, the held-out loss of its sub-network with inherited
weights at the truth's fixed timesteps and noise; ``supernet_ft``, the same after ``F``
fine-tuning steps of its own slot layers. :meth:`Supernet.extract` builds the candidate as a
standalone network with the inherited weights: it computes exactly what the supernet computes
on that path.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidnas._cache import cache_dir, config_hash
from vidnas._errors import SpecError
from vidnas.proxies._denoise import EVAL_TIMESTEPS, DenoisingTask
from vidnas.proxies._pretrain import PretrainedBackbone, image_spec
from vidnas.search_space import (
    ArchSpec,
    SearchSpace,
    TemporalChoice,
    UnitPlan,
    build_network,
    build_plan,
    build_unit,
    get_sharing_rule,
    get_temporal_op,
    module_key,
    no_sharing_key,
    prefix_slice,
    slot_unit,
)

__all__ = ["SAMPLINGS", "SuperSlot", "Supernet", "SupernetConfig", "supernet_dir", "train_supernet"]

FORMAT = "vidnas.supernet"
SAMPLINGS = ("uniform", "fair")


@dataclasses.dataclass(frozen=True)
class SupernetConfig:
    """How the supernet is trained and how candidates are scored."""

    steps: int = 2000
    batch_size: int = 8
    lr: float = 2e-3
    sampling: str = "fair"
    data: str = "shapes"
    objects: int = 2
    data_seed: int = 0
    seed: int = 0
    train_clips: int = 512
    heldout_clips: int = 16
    eval_timesteps: tuple[int, ...] = EVAL_TIMESTEPS
    score_noises: int = 1  # noise draws per held-out clip and timestep when scoring (the same for every candidate)
    finetune_steps: int = 20  # F of `supernet_ft`
    finetune_lr: float = 2e-3
    checkpoint_every: int = 100
    threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "train_clips", "heldout_clips", "checkpoint_every", "score_noises"):
            if getattr(self, name) < 1:
                raise SpecError(f"supernet.{name}", getattr(self, name), "must be >= 1")
        if self.finetune_steps < 0:
            raise SpecError("supernet.finetune_steps", self.finetune_steps, "must be >= 0")
        for name in ("lr", "finetune_lr"):
            if getattr(self, name) <= 0:
                raise SpecError(f"supernet.{name}", getattr(self, name), "must be > 0")
        if self.sampling not in SAMPLINGS:
            raise SpecError("supernet.sampling", self.sampling, "is not a path sampling", f"use one of {SAMPLINGS}")

    def weights_key(self) -> dict[str, Any]:
        """What determines the weights at a given step (the step count, scoring settings, threads and
        checkpointing do not: a run resumed towards more steps is the same run)."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in ("steps", "heldout_clips", "eval_timesteps", "finetune_steps", "finetune_lr",
                             "checkpoint_every", "threads", "score_noises")}

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "eval_timesteps": list(self.eval_timesteps)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SupernetConfig:
        return cls(**{**data, "eval_timesteps": tuple(data.get("eval_timesteps", EVAL_TIMESTEPS))})


def _choice_key(choice: TemporalChoice) -> str:
    return json.dumps([choice.op, dict(choice.params)], sort_keys=True)


@dataclasses.dataclass
class _Route:
    module: nn.Module  # a standalone unit module of the choice (its own weights are never used)
    shared: str | None  # key of the shared module in SuperSlot.shared, None for weightless choices
    largest: dict[str, Any]
    params: dict[str, Any]
    cut: Callable


class SuperSlot(nn.Module):
    """Every choice of one slot, with shared weights; runs the active one (see the module docstring)."""

    def __init__(self, slot: str, plan: UnitPlan, choices: list[TemporalChoice]) -> None:
        super().__init__()
        self.slot = slot
        self.shared = nn.ModuleDict()
        self.routes: dict[str, _Route] = {}
        self.sharing: dict[str, list[str]] = {}  # shared module -> the choices that use it
        groups: dict[tuple, list[TemporalChoice]] = {}
        for choice in choices:
            rule = get_sharing_rule(choice.op)
            key = rule.key(choice.op, choice.params) if rule else no_sharing_key(choice.op, choice.params)
            groups.setdefault(key, []).append(choice)
        shape_of = _slot_shape(plan)
        for variants in groups.values():
            op = variants[0].op
            rule = get_sharing_rule(op)
            largest = rule.largest([dict(v.params) for v in variants]) if rule and len(variants) > 1 \
                else dict(variants[0].params)
            largest = get_temporal_op(op).canonical_params(largest, shape_of, f"supernet.{slot}")
            name = str(len(self.shared))
            big = build_unit(slot_unit(plan, op, largest))
            big_shapes = {n: tuple(p.shape) for n, p in big.named_parameters()}
            uses = []
            for v in variants:
                standalone = _standalone(slot_unit(plan, v.op, v.params))
                own = {n: tuple(p.shape) for n, p in standalone.named_parameters()}
                if not own:
                    self.routes[_choice_key(v)] = _Route(standalone, None, largest, dict(v.params), prefix_slice)
                    continue
                fits = all(n in big_shapes and len(s) == len(big_shapes[n])
                           and all(a <= b for a, b in zip(s, big_shapes[n])) for n, s in own.items())
                if not fits:  # not a sub-shape after all: the variant gets a module of its own
                    alone = str(len(self.shared) + 1 + len(self.routes))
                    self.shared[alone] = build_unit(slot_unit(plan, v.op, v.params))
                    self.routes[_choice_key(v)] = _Route(standalone, alone, dict(v.params), dict(v.params),
                                                         prefix_slice)
                    self.sharing[alone] = [_choice_key(v)]
                    continue
                cut = rule.cut if rule else prefix_slice
                self.routes[_choice_key(v)] = _Route(standalone, name, largest, dict(v.params), cut)
                uses.append(_choice_key(v))
            if uses:
                self.shared[name] = big
                self.sharing[name] = uses
        self.active: str | None = None

    def weights(self, key: str) -> dict[str, torch.Tensor]:
        """The choice's parameters, cut from the shared module (differentiable views of it)."""
        route = self.routes[key]
        if route.shared is None:
            return {}
        big = dict(self.shared[route.shared].named_parameters())
        return {n: route.cut(n, big[n], tuple(p.shape), route.largest, route.params)
                for n, p in route.module.named_parameters()}

    def forward(self, h: torch.Tensor, cond: Any, aux: torch.Tensor | None = None) -> torch.Tensor:
        if self.active is None:
            raise SpecError("supernet", self.slot, "has no active choice", "call Supernet.activate(spec) first")
        route = self.routes[self.active]
        buffers = dict(route.module.named_buffers())
        return torch.func.functional_call(route.module, {**self.weights(self.active), **buffers}, (h, cond, aux))


def _slot_shape(plan: UnitPlan):
    from vidnas.search_space import slot_shape

    return slot_shape(plan)


def _standalone(plan: UnitPlan) -> nn.Module:
    """A unit module used only for its structure: on the meta device unless it has buffers."""
    with torch.device("meta"):
        module = build_unit(plan)
    if any(True for _ in module.buffers()):
        module = build_unit(plan)
    return module


class Supernet:
    """The supernet of ``space`` on ``backbone`` (see the module docstring)."""

    def __init__(self, space: SearchSpace, backbone: PretrainedBackbone, config: SupernetConfig | None = None) -> None:
        self.space = space
        self.backbone = backbone
        self.config = config or SupernetConfig()
        self.image = image_spec(space.base)
        self.net = build_network(self.image)
        backbone.load_into(self.net, self.image)
        for p in self.net.parameters():
            p.requires_grad_(False)
        plans = build_plan(self.image)
        by_slot = {p.slot: p for p in plans if p.slot is not None}
        choices: dict[str, list[TemporalChoice]] = {}
        for _group, slot, _choice, unit in space.slot_units(plans):
            canonical = TemporalChoice(unit.config["op"], unit.config["params"])
            if canonical not in choices.setdefault(slot, []):
                choices[slot].append(canonical)
        searched = set(choices)
        for slot, choice in space.base.temporal.items():  # slots the space does not search keep the base's choice
            if slot not in searched and choice.op != "none":
                choices[slot] = [choice]
        self.slots: dict[str, SuperSlot] = {}
        with torch.random.fork_rng(devices=[]):  # the shared weights' initialisation depends on the seed alone
            torch.manual_seed(self.config.seed)
            for slot, options in choices.items():
                super_slot = SuperSlot(slot, by_slot[slot], options)
                self.net.units[module_key(slot)] = super_slot
                self.slots[slot] = super_slot
        self.task = DenoisingTask(self.image, objects=self.config.objects, data=self.config.data)
        self.step = 0
        self.losses: list[float] = []
        self.seconds = 0.0
        self._optimizer: torch.optim.Optimizer | None = None
        self._heldout: list[tuple[tuple, torch.Tensor]] | None = None
        self._train_data = None

    # Paths ------------------------------------------------------------------------------------

    def project(self, spec: ArchSpec) -> ArchSpec:
        """``spec`` on this supernet's base (another clip length, size or width of the same space):
        the same op and searched parameter values at every slot group."""
        if spec.backbone == self.space.base.backbone:
            return spec
        choices: dict[str, Any] = {}
        for group in self.space.groups:
            slot = group.slots[0]
            if slot not in spec.temporal:
                raise SpecError("spec", spec.arch_id, f"has no slot {slot} of space {self.space.name}")
            given = spec.temporal[slot]
            option = next((o for o in group.options if o.op == given.op), None)
            if option is None:
                raise SpecError(f"temporal.{slot}.op", given.op, f"is not an option of space {self.space.name}")
            params = {k: given.params[k] for k in option.params if k in given.params}
            choices.update({s: TemporalChoice(given.op, params) for s in group.slots})
        return self.space.base.replace_choices(choices)

    def activate(self, spec: ArchSpec) -> ArchSpec:
        """Make ``spec``'s choices the active path; returns the spec as projected on this supernet."""
        spec = self.project(spec)
        for slot, super_slot in self.slots.items():
            key = _choice_key(spec.temporal[slot])
            if key not in super_slot.routes:
                raise SpecError(f"temporal.{slot}", spec.temporal[slot].op, "is not a choice this supernet holds",
                                f"space {self.space.name} offers {len(super_slot.routes)} choices there")
            super_slot.active = key
        return spec

    def path_spec(self, step: int) -> ArchSpec:
        """The architecture trained at ``step`` (uniform or fair over each group's options)."""
        rng = random.Random(self.config.seed * 1_000_003 + step)
        choices = {}
        for index, group in enumerate(self.space.groups):
            options = [c for o in group.options for c in o.choices()]
            if self.config.sampling == "uniform":
                pick = options[rng.randrange(len(options))]
            else:
                cycle, position = divmod(step, len(options))
                order = list(range(len(options)))
                random.Random(f"{self.config.seed}-{index}-{cycle}").shuffle(order)
                pick = options[order[position]]
            choices.update({s: pick for s in group.slots})
        return self.space.base.replace_choices(choices)

    # Training ---------------------------------------------------------------------------------

    def trainable(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"{slot}/{n}", p) for slot, s in self.slots.items() for n, p in s.shared.named_parameters()]

    def optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            params = [p for _, p in self.trainable()]
            self._optimizer = torch.optim.AdamW(params, lr=self.config.lr, weight_decay=0.0)
        return self._optimizer

    def _batch(self, step: int) -> tuple[dict[str, torch.Tensor], torch.Generator]:
        if self._train_data is None:
            self._train_data = self.task.latent_dataset(self.config.train_clips, self.config.data_seed)
        gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        index = torch.randint(len(self._train_data), (self.config.batch_size,), generator=gen).tolist()
        return self._train_data.take(index), gen

    def train_step(self) -> float:
        self.activate(self.path_spec(self.step))
        batch, gen = self._batch(self.step)
        self.net.train()
        opt = self.optimizer()
        opt.zero_grad(set_to_none=True)
        loss = self.task.loss(self.net, batch, gen)
        if loss.requires_grad:
            loss.backward()
            opt.step()
        self.step += 1
        self.losses.append(loss.item())
        return self.losses[-1]

    def train(self, steps: int | None = None, *, checkpoint: Path | None = None,
              progress: Callable[[int, int], None] | None = None) -> Supernet:
        """Train until ``steps`` (default: the config's), checkpointing to ``checkpoint`` as it goes."""
        if self.config.threads is not None:
            torch.set_num_threads(self.config.threads)
        steps = self.config.steps if steps is None else steps
        started = time.perf_counter()
        last_save = self.step
        while self.step < steps:
            self.train_step()
            if progress:
                progress(self.step, steps)
            if checkpoint is not None and self.step - last_save >= self.config.checkpoint_every:
                self.seconds += time.perf_counter() - started
                started = time.perf_counter()
                self.save(checkpoint)
                last_save = self.step
        self.seconds += time.perf_counter() - started
        if checkpoint is not None:
            self.save(checkpoint)
        return self

    # Scores -----------------------------------------------------------------------------------

    def _heldout_problems(self) -> list[tuple[tuple, torch.Tensor]]:
        if self._heldout is None:
            batch = self.task.heldout_batch(self.config.heldout_clips, self.config.data_seed)
            n = batch["latents"].shape[0]
            self._heldout = []
            for draw in range(self.config.score_noises):  # draw 0 is the truth's noise: the same problems
                gen = torch.Generator().manual_seed(draw)
                self._heldout += [self.task.model_inputs(batch, torch.full((n,), t), self.task.noise(n, gen))
                                  for t in self.config.eval_timesteps]
        return self._heldout

    @torch.no_grad()
    def heldout_loss(self, net: nn.Module) -> float:
        net.eval()
        losses = [float(self.task.error(net, args, target)) for args, target in self._heldout_problems()]
        return sum(losses) / len(losses)

    def score(self, spec: ArchSpec) -> float:
        """Held-out loss of ``spec``'s sub-network with inherited weights (lower is better)."""
        self.activate(spec)
        return self.heldout_loss(self.net)

    def extract(self, spec: ArchSpec) -> nn.Module:
        """``spec`` built standalone (``build_network``) with the backbone's and the supernet's weights."""
        spec = self.activate(spec)
        net = build_network(spec)
        self.backbone.load_into(net, spec)
        with torch.no_grad():
            for slot, super_slot in self.slots.items():
                weights = super_slot.weights(super_slot.active)
                unit = net.units[module_key(slot)]
                own = dict(unit.named_parameters())
                for name, value in weights.items():
                    own[name].copy_(value)
        return net

    def score_finetuned(self, spec: ArchSpec, steps: int | None = None, *, seed: int = 0) -> float:
        """Held-out loss after ``steps`` fine-tuning steps of ``spec``'s own slot layers (backbone frozen)."""
        steps = self.config.finetune_steps if steps is None else steps
        net = self.extract(spec)
        spec = self.project(spec)
        slot_units = {module_key(s) for s in self.slots if spec.temporal[s].op != "none"}
        own = [p for n, p in net.named_parameters() if n.split(".")[1] in slot_units]
        for n, p in net.named_parameters():
            p.requires_grad_(n.split(".")[1] in slot_units)
        if steps and own:
            optimizer = torch.optim.AdamW(own, lr=self.config.finetune_lr, weight_decay=0.0)
            net.train()
            for step in range(steps):
                batch, gen = self._batch(10_000_000 + seed * 1000 + step)
                loss = self.task.loss(net, batch, gen)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return self.heldout_loss(net)

    # Checkpoints ------------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        return {"space": self.space.describe(), "backbone_id": self.backbone.backbone_id,
                "config": self.config.weights_key()}

    def save(self, path: Path) -> Path:
        """Weights, optimiser state and step as safetensors (atomic), plus a readable ``.json`` beside."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"param/{name}": p.detach().contiguous() for name, p in self.trainable()}
        opt = self.optimizer().state_dict()
        for index, state in opt["state"].items():
            for key, value in state.items():
                tensors[f"opt/{index}/{key}"] = torch.as_tensor(value).detach().reshape(-1).contiguous()
        meta = {"format": FORMAT, "step": self.step, "identity": self.identity(), "losses": self.losses,
                "seconds": self.seconds, "param_groups": opt["param_groups"]}
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "meta": json.dumps(meta)})
        os.replace(tmp, path)
        summary = {k: v for k, v in meta.items() if k not in ("losses", "param_groups")}
        summary["loss_last_10pct"] = _tail_mean(self.losses)
        path.with_suffix(".json").write_text(json.dumps(summary, indent=2))
        return path

    def load(self, path: Path) -> Supernet:
        """Restore a checkpoint written by :meth:`save` for this same space, backbone and config."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("meta", "{}"))
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except Exception as exc:
            raise SpecError("supernet", str(path), f"cannot be read as a supernet checkpoint ({exc})") from None
        if meta.get("format") != FORMAT:
            raise SpecError("supernet", str(path), "is not a vidnas supernet checkpoint")
        if meta["identity"] != json.loads(json.dumps(self.identity())):
            raise SpecError("supernet", str(path), "was trained for another space, backbone or configuration")
        named = dict(self.trainable())
        with torch.no_grad():
            for name, p in named.items():
                p.copy_(tensors[f"param/{name}"])
        opt = self.optimizer()
        state = opt.state_dict()
        restored: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("opt/"):
                _, index, field = key.split("/")
                restored.setdefault(int(index), {})[field] = value
        params = [p for _, p in self.trainable()]
        for index, fields in restored.items():
            shape = params[index].shape
            restored[index] = {k: (v.reshape(()) if k == "step" else v.reshape(shape)) for k, v in fields.items()}
        state["state"] = restored
        state["param_groups"] = meta["param_groups"]
        opt.load_state_dict(state)
        self.step = meta["step"]
        self.losses = list(meta["losses"])
        self.seconds = meta["seconds"]
        return self

    def describe(self) -> dict[str, Any]:
        slots = {}
        for slot, s in self.slots.items():
            slots[slot] = {"choices": len(s.routes), "modules": len(s.shared),
                           "params": sum(p.numel() for p in s.shared.parameters())}
        return {"space": self.space.name, "space_shape": dict(self.space.shape), "step": self.step,
                "backbone_id": self.backbone.backbone_id, "config": self.config.to_dict(), "seconds": self.seconds,
                "trainable_params": sum(p.numel() for _, p in self.trainable()), "slots": slots,
                "loss_last_10pct": _tail_mean(self.losses)}


def _tail_mean(values: list[float]) -> float | None:
    if not values:
        return None
    tail = values[-max(1, len(values) // 10):]
    return sum(tail) / len(tail)


def supernet_dir(space: SearchSpace, config: SupernetConfig, backbone: PretrainedBackbone) -> Path:
    key = config_hash(space.describe(), backbone.backbone_id, config.weights_key(), config.steps)
    return cache_dir() / "supernets" / f"{space.name}-{key}"


def train_supernet(space: SearchSpace, backbone: PretrainedBackbone, config: SupernetConfig | None = None, *,
                   out: Path | None = None, progress: Callable[[int, int], None] | None = None) -> Supernet:
    """The trained supernet of ``space``: resumed from (or found finished in) ``out`` (default: the
    cache), trained to ``config.steps`` with checkpoints along the way."""
    config = config or SupernetConfig()
    out = Path(out) if out is not None else supernet_dir(space, config, backbone)
    supernet = Supernet(space, backbone, config)
    checkpoint = out / "supernet.safetensors"
    if checkpoint.exists():
        supernet.load(checkpoint)
        if supernet.step > config.steps:
            raise SpecError("supernet.steps", config.steps, f"is fewer than the {supernet.step} steps the checkpoint "
                                                            f"in {out} already has", "give another output directory")
    if supernet.step < config.steps:
        supernet.train(config.steps, checkpoint=checkpoint, progress=progress)
    return supernet


def load_supernet(directory: str | Path, space: SearchSpace, backbone: PretrainedBackbone,
                  config: SupernetConfig) -> Supernet:
    """A supernet trained earlier into ``directory`` (checked to match the space, backbone and config)."""
    path = Path(directory) / "supernet.safetensors"
    if not path.exists():
        raise SpecError("supernet", str(directory), "holds no supernet.safetensors",
                        "train one with `vidnas proxies supernet --space SPACE --out DIR`")
    return Supernet(space, backbone, config).load(path)
