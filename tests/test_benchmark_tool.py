"""Smoke test of tools/analysis/benchmark_hat.py on CPU (numbers are not asserted: speed is
measured by the tool, not by tests)."""
from tools.analysis.benchmark_hat import main

from .runner_utils import DEMO_CONFIG


def test_benchmark_runs_all_three_steps_on_cpu(capsys):
    results = main([DEMO_CONFIG, '--device', 'cpu', '--batch-size', '4', '--iters', '2',
                    '--warmup', '1'])
    assert set(results) == {'plain', 'official', 'hat-mm'}
    assert all(r['sec'] > 0 and 0 < r['mfu'] for r in results.values())
    out = capsys.readouterr().out
    assert 'hat-mm speed vs official-style' in out and 'fast paths: none' in out


def test_benchmark_compiles_the_hat_mm_model(capsys):
    """--compile with the default (inductor) backend: the path a user's run takes."""
    results = main([DEMO_CONFIG, '--device', 'cpu', '--batch-size', '4', '--iters', '2',
                    '--warmup', '1', '--steps', 'hat-mm', '--compile', '--peak-tflops', '1'])
    assert set(results) == {'hat-mm'} and results['hat-mm']['sec'] > 0
    assert "fast paths: {'compile': True}" in capsys.readouterr().out
