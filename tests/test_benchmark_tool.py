"""Smoke test of tools/analysis/benchmark_hat.py on CPU (numbers are not asserted: speed is
measured by the tool, not by tests)."""
from tools.analysis.benchmark_hat import main

from .runner_utils import DEMO_CONFIG


def test_benchmark_runs_all_three_steps_on_cpu(capsys):
    results = main([DEMO_CONFIG, '--device', 'cpu', '--batch-size', '4', '--iters', '2',
                    '--warmup', '1'])
    assert set(results) == {'plain', 'official', 'hat-mm'}
    assert all(t > 0 for t in results.values())
    out = capsys.readouterr().out
    assert 'hat-mm speed vs official-style' in out
