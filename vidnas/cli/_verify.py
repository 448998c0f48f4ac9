"""``vidnas verify``: train K of a campaign's architectures; does its quality axis hold?"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vidnas.cli._common import emit_json, handle_errors, stdout_console
from vidnas.cli._options import JsonOpt, progress_bar, stage_updater


@handle_errors
def verify_command(
    run_dir: Annotated[Path, typer.Argument(help="A finished campaign's run directory.")],
    k: Annotated[int, typer.Option("--k", help="Architectures to train: the Pareto set first, then others spread "
                                               "along the quality axis.")] = 8,
    steps: Annotated[int, typer.Option("--steps", help="Training steps per architecture (the truth's protocol: "
                                                       "1200).")] = 1200,
    workers: Annotated[int, typer.Option("--workers", help="Processes of one thread training at once.")] = 2,
    seconds_budget: Annotated[float, typer.Option("--seconds-budget", help="Wall-clock budget; the verification "
                                                                           "scale is lowered until the estimate "
                                                                           "fits, or nothing runs.")] = 900.0,
    frames: Annotated[int | None, typer.Option("--frames", help="Verification scale: frames (fixes the scale).")
                      ] = None,
    height: Annotated[int | None, typer.Option("--height", help="Verification scale: pixel height.")] = None,
    width: Annotated[int | None, typer.Option("--width", help="Verification scale: pixel width.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train K architectures of RUN_DIR with the ground truth's protocol and judge its quality objective
    against them (resumable: finished runs are recorded in RUN_DIR/verify/truth)."""
    from vidnas.cli._common import stderr_console
    from vidnas.runners import verify

    shape = {key: v for key, v in (("frames", frames), ("height", height), ("width", width)) if v is not None}
    with progress_bar("verify") as bar:
        on_progress = stage_updater(bar)
        result = verify(run_dir, k=k, steps=steps, workers=workers, seconds_budget=seconds_budget,
                        shape=shape or None, progress=on_progress, log=lambda m: stderr_console().print(m))
    try:  # the report gains its verification section
        from vidnas.reports import write_report

        write_report(run_dir)
    except Exception as exc:  # the verification stands without the report
        stderr_console().print(f"report not rewritten: {exc}")
    if as_json:
        emit_json(result)
        return
    console = stdout_console()
    lo, hi = result["kendall_ci"]
    console.print(f"{result['k']} architectures of {run_dir} trained {result['steps']} steps at {result['shape']} "
                  f"in {result['seconds'] / 60:.1f} min")
    console.print(f"{result['metric']} against the truth: Kendall tau {result['kendall']:+.2f} [{lo:+.2f}, {hi:+.2f}]")
    if result["front_pairs"]:
        console.print(f"front order: {result['front_pairs_in_order']} of {result['front_pairs']} pairs of Pareto "
                      f"architectures in the truth's order ({'held' if result['front_order_held'] else 'not held'})")
    else:
        console.print("front order: fewer than two Pareto architectures with distinct values; nothing to compare")
