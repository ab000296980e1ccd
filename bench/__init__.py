"""Benchmark of the p2p-chat WebSocket hot path (issue #7).

``python -m bench run --scenario a|b|c|d`` (or ``make bench ARGS="--scenario b"``); see
``docs/performance.md`` for what each scenario measures and the figures recorded so far.
"""
