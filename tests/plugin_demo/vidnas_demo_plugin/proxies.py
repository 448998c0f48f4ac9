"""``demo_params``: the parameter count, as a (poor) quality proxy."""

from __future__ import annotations

from vidnas.proxies import register_proxy


@register_proxy("demo_params", kind="count", higher_is_better=True, summary="parameters (demo plugin)",
                cost="instant")
def demo_params(spec, batch, seed):
    from vidnas.search_space import count_spec

    return float(count_spec(spec).params)
