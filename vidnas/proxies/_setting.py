"""What a calibration's figures (and a quality model fitted on them) hold for: the setting.

A learned quality model or a calibration's tau is refused outside its setting (another space,
shape, data, backbone pretraining or supernet), so the setting is read the same way wherever
it is compared.
"""

from __future__ import annotations

from typing import Any

__all__ = ["calibration_setting", "supernet_setting"]


def calibration_setting(summary: dict[str, Any]) -> dict[str, Any]:
    """What a calibration's figures hold for: space and shape, data, backbone pretraining, supernet."""
    config = summary.get("config", {})
    supernet = config.get("supernet") or {}
    return {"space": config.get("space"), "space_shape": config.get("space_shape") or {},
            "data": (config.get("train") or {}).get("data", "shapes"), "pretrain": config.get("pretrain"),
            "supernet": supernet_setting(supernet.get("config")) if supernet else None}


def supernet_setting(config: dict[str, Any] | None) -> dict[str, Any] | None:
    if not config:
        return None
    keep = ("steps", "batch_size", "lr", "sampling", "data", "objects", "data_seed", "seed", "train_clips")
    return {k: config.get(k) for k in keep}
