"""The built-in proxies: counts, training-free scores, temporal measures, one-shot, short training.

Training-free proxies see the network at its random initialisation (never the pretrained
backbone: they cost nothing to prepare, and mean the same in a calibration and a campaign);
training proxies train the candidate as the ground truth does, on the pretrained spatial
backbone when the batch carries one; one-shot proxies read the space's trained supernet. The
temporal layers' zero-initialised output layers (identity at insertion) would hide them, so
probes first re-initialise every all-zero layer with its module's default initialisation;
without that, every architecture would look like the image model at step 0.
"""

from __future__ import annotations

import math

import torch

from vidnas.proxies._denoise import DenoisingTask, TrainResult, short_train
from vidnas.proxies._registry import ProxyBatch, register_proxy
from vidnas.search_space import ArchSpec, count_spec

# Network probes --------------------------------------------------------------------------------


def probe_network(spec: ArchSpec, seed: int, backbone=None) -> torch.nn.Module:
    """The network at a seeded initialisation (on the pretrained backbone when given), with
    zero-initialised layers re-initialised."""
    from vidnas.proxies._denoise import candidate_network

    net, _, _ = candidate_network(spec, backbone, seed=seed)
    net.eval()
    reinit_zero_layers_(net)
    return net


def reinit_zero_layers_(net: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for module in net.modules():
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.nn.Parameter) and weight.numel() > 1 and not weight.any() \
                    and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        for name, p in net.named_parameters():
            if name.endswith("gate") and not p.any():  # the shift op's per-channel gate
                p.fill_(1.0)
    return net


def _task_inputs(spec: ArchSpec, batch: ProxyBatch, seed: int, *, timestep: int = 500):
    task = DenoisingTask(spec)
    bb = spec.backbone
    n = batch.clips["pixels"].shape[0]
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, bb.frames, bb.latent_channels, bb.latent_height, bb.latent_width, generator=gen)
    return task, task.model_inputs(batch.clips, torch.full((n,), timestep), noise)


def _loss_gradients(spec: ArchSpec, clips: dict[str, torch.Tensor], seed: int,
                    backbone=None) -> tuple[torch.nn.Module, float]:
    """A probe network with ``.grad`` of the denoising loss on ``clips``."""
    net = probe_network(spec, seed, backbone)
    task = DenoisingTask(spec)
    loss = task.loss(net, clips, torch.Generator().manual_seed(seed))
    loss.backward()
    return net, float(loss.detach())


# Counts ------------------------------------------------------------------------------------------


@register_proxy("params", kind="count", higher_is_better=True, summary="parameter count", cost="free")
def params_proxy(spec: ArchSpec, batch: ProxyBatch, seed: int) -> float:
    return float(count_spec(spec).params)


@register_proxy("flops", kind="count", higher_is_better=True, summary="FLOPs per network call", cost="free")
def flops_proxy(spec: ArchSpec, batch: ProxyBatch, seed: int) -> float:
    return float(count_spec(spec).flops)


@register_proxy("temporal_flops_share", kind="count", higher_is_better=True,
                summary="share of FLOPs spent in temporal layers", cost="free")
def temporal_share_proxy(spec: ArchSpec, batch: ProxyBatch, seed: int) -> float:
    report = count_spec(spec)
    return report.temporal_flops / report.flops


# Training-free ----------------------------------------------------------------------------------


@register_proxy("grad_norm", kind="zero_cost", higher_is_better=True,
                summary="L2 norm of the denoising loss's gradient at initialisation", cost="1 forward + backward")
def grad_norm_proxy(spec: ArchSpec, batch: ProxyBatch, seed: int) -> float:
    net, _ = _loss_gradients(spec, batch.clips, seed, batch.backbone)
    return math.sqrt(sum(float(p.grad.pow(2).sum()) for p in net.parameters() if p.grad is not None))


@register_proxy("snip", kind="zero_cost", higher_is_better=True,
                summary="SNIP saliency: sum |theta * dL/dtheta| of the denoising loss", cost="1 forward + backward")
def snip_proxy(spec: ArchSpec, batch: ProxyBatch, seed: int) -> float:
    net, _ = _loss_gradients(spec, batch.clips, seed, batch.backbone)
    return sum(float((p.detach() * p.grad).abs().sum()) for p in net.parameters() if p.grad is not None)


@register_proxy("synflow", kind="zero_cost", higher_is_better=True,
                summary="log10 SynFlow: data-free path strength with |weights|, norms as affine maps, float64",
                cost="1 forward + backward (float64)")
def synflow_proxy(spec: ArchSpec, batch: ProxyBatch, seed: int) -> float:
    """SynFlow adapted to GroupNorm/LayerNorm networks with multiplicative gates.

    With all-ones input a normalisation layer outputs only its bias and cuts every path,
    so normalisations act as their affine maps (|weight| x + |bias|) during the probe.
    Attention and GEGLU multiply activations together, squaring their magnitude in every
    block until float64 overflows; each unit's output is therefore divided by its mean
    magnitude (a detached scalar), which keeps path products finite without changing
    which paths exist.
    """
    net = probe_network(spec, seed, batch.backbone).double()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    hooks = []
    for module in net.modules():
        if isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
            hooks.append(module.register_forward_hook(_affine_instead_of_norm))
    for module in net.units.values():
        hooks.append(module.register_forward_hook(_unit_scale))
    try:
        task, (args, _) = _task_inputs(spec, batch, seed)
        ones = [torch.ones_like(a, dtype=torch.float64) if a is not None and a.is_floating_point() else a
                for a in args]
        ones[1] = args[1].double()
        out = net(*ones)
        out.sum().backward()
    finally:
        for h in hooks:
            h.remove()
    total = sum(float((p.detach() * p.grad).sum()) for p in net.parameters() if p.grad is not None)
    return math.log10(total) if total > 0 else -math.inf


def _unit_scale(module, inputs, output):
    return output / output.detach().abs().mean().clamp_min(1e-300)


def _affine_instead_of_norm(module, inputs, output):
    x = inputs[0]
    if module.weight is None:  # a norm without affine parameters (a transformer's modulated norms)
        return x
    if isinstance(module, torch.nn.LayerNorm):
        return x * module.weight.abs() + module.bias.abs()
    shape = [1, -1] + [1] * (x.ndim - 2)
    return x * module.weight.abs().view(shape) + module.bias.abs().view(shape)


@register_proxy("zico", kind="zero_cost", higher_is_better=True,
                summary="ZiCo: sum over layers of log(sum mean|g| / std(g)) across clips", cost="N forward + backward")
def zico_proxy(spec: ArchSpec, batch: ProxyBatch, seed: int) -> float:
    n = batch.clips["pixels"].shape[0]
    if n < 2:
        raise ValueError("zico needs at least two clips in the batch")
    grads: dict[str, list[torch.Tensor]] = {}
    for i in range(n):
        single = {k: v[i : i + 1] for k, v in batch.clips.items()}
        net, _ = _loss_gradients(spec, single, seed, batch.backbone)
        for name, p in net.named_parameters():
            if p.grad is not None and p.dim() > 1:
                grads.setdefault(name, []).append(p.grad.detach().flatten().clone())
    total = 0.0
    for stack in grads.values():
        g = torch.stack(stack)
        std = g.std(dim=0)
        mask = std > 0
        if mask.any():
            ratio = float((g.abs().mean(dim=0)[mask] / std[mask]).sum())
            if ratio > 0:
                total += math.log(ratio)
    return total


@register_proxy("naswot_silu", kind="zero_cost", higher_is_better=True,
                summary="NASWOT on SiLU/GELU pre-activation signs: log|det K| of per-clip binary codes",
                cost="N forward passes")
def naswot_proxy(spec: ArchSpec, batch: ProxyBatch, seed: int) -> float:
    """NASWOT adapted to smooth activations: a unit is "on" when its SiLU/GELU input is positive.

    Each clip's code concatenates up to 4096 fixed positions of every activation's input;
    ``K[i, j]`` counts the positions where clips i and j agree, and the score is
    ``log|det K|``: more distinct codes, more expressive at initialisation.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    net = probe_network(spec, seed, batch.backbone)
    n = batch.clips["pixels"].shape[0]
    activations = {torch.ops.aten.silu.default, torch.ops.aten.gelu.default}
    rng = torch.Generator().manual_seed(seed)

    class Codes(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.parts: list[torch.Tensor] = []
            self.index: dict[int, torch.Tensor] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in activations:
                flat = args[0].detach().flatten()
                k = len(self.parts)
                if k not in self.index:
                    self.index[k] = torch.randint(0, flat.numel(), (min(4096, flat.numel()),), generator=rng)
                self.parts.append((flat[self.index[k]] > 0).float())
            return func(*args, **(kwargs or {}))

    codes = []
    with torch.no_grad():
        for i in range(n):
            single = ProxyBatch({k: v[i : i + 1] for k, v in batch.clips.items()}, batch.train, batch.backbone)
            _, (args, _) = _task_inputs(spec, single, seed)
            mode = Codes()
            mode.index = codes[0][1] if codes else {}
            with mode:
                net(*args)
            codes.append((torch.cat(mode.parts), mode.index))
    c = torch.stack([code for code, _ in codes])
    agree = c @ c.T + (1 - c) @ (1 - c).T
    sign, logdet = torch.linalg.slogdet(agree.double())
    return float(logdet) if sign > 0 else -math.inf


# Temporal ---------------------------------------------------------------------------------------


def frame_sensitivity(spec: ArchSpec, batch: ProxyBatch, seed: int, *, future_only: bool = False) -> float:
    """How much output frame t depends on input frames other than t (or only later than t).

    For output frames t in {0, T/2, T-1}: the gradient of a random projection of frame t's
    output with respect to the whole input clip; the score is the root of the share of
    squared gradient on the other (or later) frames, averaged over t. Exactly zero for a
    network without temporal layers.
    """
    net = probe_network(spec, seed, batch.backbone)
    _, (args, _) = _task_inputs(spec, batch, seed)
    sample = args[0].clone().requires_grad_(True)
    out = net(sample, *args[1:])
    frames = spec.backbone.frames
    gen = torch.Generator().manual_seed(seed + 7)
    shares = []
    for t in sorted({0, frames // 2, frames - 1}):
        r = torch.randn(out[:, t].shape, generator=gen)
        (grad,) = torch.autograd.grad((out[:, t] * r).sum(), sample, retain_graph=True)
        per_frame = grad.pow(2).sum(dim=(0, 2, 3, 4))
        total = float(per_frame.sum())
        other = float(per_frame[t + 1 :].sum()) if future_only else total - float(per_frame[t])
        shares.append(math.sqrt(other / total) if total > 0 else 0.0)
    return sum(shares) / len(shares)


@register_proxy("cross_frame_sensitivity", kind="temporal", higher_is_better=True,
                summary="share of output frame t's input gradient on frames other than t (0: no temporal mixing)",
                cost="1 forward + 3 backward")
def cross_frame_proxy(spec: ArchSpec, batch: ProxyBatch, seed: int) -> float:
    return frame_sensitivity(spec, batch, seed)


# One-shot (the space's supernet) ----------------------------------------------------------------


@register_proxy("supernet", kind="one_shot", higher_is_better=False,
                summary="held-out loss of the candidate's sub-network with weights inherited from the space's supernet",
                cost="a few forward passes (trained supernet)", requires=("supernet",))
def supernet_proxy(spec: ArchSpec, batch: ProxyBatch, seed: int) -> float:
    return batch.supernet.score(spec)


@register_proxy("supernet_ft", kind="one_shot", higher_is_better=False,
                summary="held-out loss after F fine-tuning steps of the candidate's own slot layers, from the "
                        "supernet's weights", cost="F training steps (trained supernet)", requires=("supernet",))
def supernet_ft_proxy(spec: ArchSpec, batch: ProxyBatch, seed: int) -> float:
    return batch.supernet.score_finetuned(spec, seed=seed)


# Short training ----------------------------------------------------------------------------------

_TRAINED: dict[tuple[str, int, str, str | None], TrainResult] = {}


def trained(spec: ArchSpec, batch: ProxyBatch, seed: int) -> TrainResult:
    """The short training run for (spec, seed, batch.train, batch.backbone), shared by the training
    proxies: the ground truth's protocol (frozen pretrained backbone when given) with fewer steps."""
    import json

    backbone_id = batch.backbone.backbone_id if batch.backbone is not None else None
    key = (spec.arch_id, seed, json.dumps(batch.train.to_dict(), sort_keys=True), backbone_id)
    if key not in _TRAINED:
        if len(_TRAINED) > 16:
            _TRAINED.clear()
        _TRAINED[key] = short_train(spec, batch.train, seed=seed, backbone=batch.backbone)
    return _TRAINED[key]


@register_proxy("train_loss_sum", kind="training", higher_is_better=False,
                summary="sum of training losses over the short run", cost="batch.train.steps training steps")
def train_loss_sum_proxy(spec: ArchSpec, batch: ProxyBatch, seed: int) -> float:
    return trained(spec, batch, seed).train_loss_sum


@register_proxy("heldout_loss_short", kind="training", higher_is_better=False,
                summary="held-out loss (fixed timesteps and noise) after the short run",
                cost="batch.train.steps training steps")
def heldout_short_proxy(spec: ArchSpec, batch: ProxyBatch, seed: int) -> float:
    return trained(spec, batch, seed).heldout_loss


@register_proxy("temporal_order_gap", kind="temporal", higher_is_better=True, uses_backbone=True,
                summary="held-out loss on frame-shuffled clips minus on ordered clips, after the short run",
                cost="batch.train.steps training steps")
def temporal_order_gap_proxy(spec: ArchSpec, batch: ProxyBatch, seed: int) -> float:
    return trained(spec, batch, seed).temporal_order_gap
