"""Search campaigns: Optuna ask/tell in the driver, evaluations as Ray tasks, resumable storage."""

from vidnas.runners._campaign import Campaign
from vidnas.runners._config import (
    CampaignConfig,
    Objective,
    load_config,
    parse_config,
    validate_config,
)
from vidnas.runners._driver import (
    CONFIG_FILE,
    STUDY_FILE,
    CampaignResult,
    Progress,
    cache_dir,
    export_pareto,
    pareto_trials,
    run_campaign,
)
from vidnas.runners._evaluate import EvalCache, EvalSettings, evaluate
from vidnas.runners._export import ExportOptions, export_run
from vidnas.runners._metrics import CHEAP_METRICS, Metric, parse_metric
from vidnas.runners._quality import quality_setting
from vidnas.runners._ray import RaySession, kill_recorded
from vidnas.runners._samplers import (
    SAMPLERS,
    SamplerContext,
    SamplerDef,
    SamplerOption,
    get_sampler,
    list_samplers,
    register_sampler,
)
from vidnas.runners._verify import VERIFY_FILE, VerifyOptions, verify

__all__ = [
    "SAMPLERS",
    "Campaign",
    "EvalCache",
    "ExportOptions",
    "VerifyOptions",
    "quality_setting",
    "VERIFY_FILE",
    "verify",
    "CHEAP_METRICS",
    "CONFIG_FILE",
    "STUDY_FILE",
    "CampaignConfig",
    "CampaignResult",
    "EvalSettings",
    "Metric",
    "Objective",
    "Progress",
    "RaySession",
    "SamplerContext",
    "SamplerDef",
    "SamplerOption",
    "cache_dir",
    "evaluate",
    "export_pareto",
    "export_run",
    "get_sampler",
    "kill_recorded",
    "list_samplers",
    "load_config",
    "pareto_trials",
    "parse_config",
    "parse_metric",
    "register_sampler",
    "run_campaign",
    "validate_config",
]
