"""tools/analysis/gpu_measurements.py: every item's command is one its tool accepts, and the
budget, failures and the index behave as documented (on stand-in commands; the real items
need a GPU and minutes)."""
import argparse
import json
import sys

import pytest

from tools.analysis import gpu_measurements as gm


def _tool_args(cmd):
    """(tool path, its arguments) of an item's command line."""
    assert cmd[0] == sys.executable
    return cmd[1], cmd[2:]


@pytest.mark.parametrize('item', gm.ITEMS, ids=[it[0] for it in gm.ITEMS])
def test_every_item_is_a_command_its_tool_accepts(item, tmp_path):
    from mmengine.config import Config, DictAction

    from tools.analysis import (benchmark_hat, benchmark_tables, gpu_check,
                                train_throughput)
    name, estimate, argv = item
    assert estimate > 0
    tool, args = _tool_args(gm.command(argv, str(tmp_path), str(tmp_path / 'data')))
    parse = {'tools/analysis/benchmark_tables.py': benchmark_tables.parse_args,
             'tools/analysis/benchmark_hat.py': benchmark_hat.parse_args,
             'tools/analysis/train_throughput.py': train_throughput.parse_args,
             'tools/analysis/gpu_check.py': gpu_check.parse_args}[tool]
    parsed = parse(args)  # argparse exits on an unknown option
    assert str(tmp_path) in ' '.join(args)  # every output under --out-dir
    if tool.endswith('benchmark_tables.py'):
        (config,) = parsed.configs
        assert parsed.variants in benchmark_tables.variants_for(config)
        assert name == f'bench/{parsed.amp}/{name.split("/")[2]}/{parsed.variants}'
    if tool.endswith('train_throughput.py'):
        # the options exist where they are set: the preprocessor takes them, the collate is
        # a registered function
        from mmengine.registry import FUNCTIONS

        import hat_mm  # noqa: F401
        from mmpretrain.registry import MODELS
        cfg = Config.fromfile(parsed.config)
        options = argparse.ArgumentParser()
        options.add_argument('--o', nargs='+', action=DictAction, default={})
        cfg.merge_from_dict(options.parse_args(['--o', *parsed.cfg_options]).o
                            if parsed.cfg_options else {})
        preprocessor = cfg.model.get('data_preprocessor', cfg.get('data_preprocessor'))
        assert MODELS.build(preprocessor) is not None  # as the runner builds it
        assert FUNCTIONS.get(cfg.train_dataloader.collate_fn.type) is not None
        assert (tmp_path / 'data') == type(tmp_path)(parsed.data)


def test_optional_file_arguments_are_dropped_when_absent(tmp_path):
    argv = ['x.py', '--step-json', '{out}/step.json?', '--out', '{out}/o']
    assert gm.command(argv, str(tmp_path), 'd')[1:] == ['x.py', '--out', f'{tmp_path}/o']
    (tmp_path / 'step.json').write_text('{}')
    assert gm.command(argv, str(tmp_path), 'd')[1:] == [
        'x.py', '--step-json', f'{tmp_path}/step.json', '--out', f'{tmp_path}/o']


def test_budget_failures_and_index(tmp_path, capsys):
    items = [
        ('a/ok', 1, ['-c', "open(r'{out}/made.txt', 'w').write('x')"]),
        ('a/fails', 1, ['-c', 'import sys; print("bad input"); sys.exit(3)']),
        ('a/too_long', 1000, ['-c', 'pass']),
        ('a/runs_over', 1, ['-c', 'import time; print("started", flush=True); '
                            'time.sleep(120)']),
        ('b/other', 1, ['-c', 'pass']),
    ]
    out = tmp_path / 'out'
    rows = gm.main(['--out-dir', str(out), '--budget', '8', '--only', 'a/*'], items=items)
    status = {r['item']: r['status'] for r in rows}
    assert status == {'a/ok': 'done', 'a/fails': 'failed (exit 3)',
                      'a/too_long': status['a/too_long'],
                      'a/runs_over': 'stopped at the budget'}  # b/other: not chosen
    assert status['a/too_long'].startswith('not run (needs ~1000 s, ')
    assert (out / 'made.txt').read_text() == 'x'
    assert 'bad input' in (out / 'logs' / 'a_fails.log').read_text()
    assert 'started' in (out / 'logs' / 'a_runs_over.log').read_text()
    over = next(r for r in rows if r['item'] == 'a/runs_over')
    assert over['seconds'] < 60  # stopped when the budget ended, not after its sleep
    index = json.loads((out / 'measurements.json').read_text())
    assert [r['item'] for r in index['items']] == ['a/ok', 'a/fails', 'a/too_long',
                                                   'a/runs_over']
    assert {'gpu', 'torch', 'commit'} <= set(index)
    table = (out / 'measurements.md').read_text()
    assert '| a/fails | failed (exit 3) |' in table
    assert 'failed: a/fails' in capsys.readouterr().out


def test_list_runs_nothing_and_unknown_patterns_are_refused(tmp_path, capsys):
    out = tmp_path / 'out'
    assert gm.main(['--out-dir', str(out), '--list', '--only', 'bench/bf16/swin_t/*']) == []
    text = capsys.readouterr().out
    assert 'bench/bf16/swin_t/defaults' in text and 'bench/bf16/vit_b' not in text
    assert not out.exists()
    with pytest.raises(SystemExit, match='no item matches'):
        gm.main(['--out-dir', str(out), '--only', 'nothing/*'])


def _timed_benchmark_args(item, tmp_path, monkeypatch):
    """The benchmark_hat.py arguments that benchmark_tables.py gives the item's timed run."""
    from tools.analysis import benchmark_tables
    _, args = _tool_args(gm.command(item[2], str(tmp_path), 'd'))
    parsed = benchmark_tables.parse_args(args)
    seen = []

    def fake_run(cmd, **kwargs):
        seen.append(cmd)
        return argparse.Namespace(returncode=1, stdout='')
    monkeypatch.setattr(benchmark_tables.subprocess, 'run', fake_run)
    (config,) = parsed.configs
    benchmark_tables.run_variant(parsed, config, parsed.variants,
                                 benchmark_tables.variants_for(config)[parsed.variants],
                                 str(tmp_path / 'timed.json'))
    return seen[0][2:]


@pytest.mark.parametrize('item', [it for it in gm.ITEMS if it[0].startswith('bench/')],
                         ids=[it[0] for it in gm.ITEMS if it[0].startswith('bench/')])
def test_precompile_compiles_what_the_timed_run_compiles(item, tmp_path, monkeypatch):
    """Inductor's caches serve the timed run only if the precompile builds the same model
    with the same options: its arguments are the timed run's but for steps and output."""
    from tools.analysis import benchmark_hat
    cmd = gm.precompile_command(item, str(tmp_path))
    variant = item[0].split('/')[3]
    compiles = variant in ('compile', 'autotune', 'fused+compile', 'all') or (
        variant in ('defaults', 'per-param-groups')
        and item[0].split('/')[2] in ('swin_t', 'vit_b'))  # the configs that compile on CUDA
    assert (cmd is not None) == compiles
    if cmd is None:
        return
    tool, args = _tool_args(cmd)
    assert tool == 'tools/analysis/benchmark_hat.py'
    pre = vars(benchmark_hat.parse_args(args))
    timed = vars(benchmark_hat.parse_args(_timed_benchmark_args(item, tmp_path, monkeypatch)))
    assert (pre['iters'], pre['warmup']) == (1, 2)
    assert pre['out'].startswith(str(tmp_path))
    for key in ('iters', 'warmup', 'out'):
        pre.pop(key), timed.pop(key)
    assert pre == timed


def test_precompile_runs_side_by_side_and_halves_the_estimates_of_warm_items(tmp_path):
    out = tmp_path / 'out'
    items = [
        ('bench/bf16/m/defaults', 9, ['-c', 'pass']),
        ('bench/bf16/m/broken', 9, ['-c', 'pass']),
        ('profile/m', 9, ['-c', 'pass']),  # the same graphs as bench/bf16/m/defaults
        ('throughput/m/default', 9, ['-c', 'pass']),
        ('bench/bf16/other/defaults', 9, ['-c', 'pass']),  # after the first 2: not compiled
        ('gpu_check', 9, ['-c', 'pass']),
    ]

    def stand_in(item, out_dir):
        if not item[0].startswith('bench/'):
            return None
        code = 'import sys, time; time.sleep(2); '
        code += 'sys.exit(1)' if 'broken' in item[0] else f"open(r'{out_dir}/made', 'w')"
        return [sys.executable, '-c', code]

    rows = gm.main(['--out-dir', str(out), '--budget', '10', '--precompile', '2'],
                   items=items, precompile_command_of=stand_in)
    status = {r['item']: r['status'] for r in rows}
    assert (out / 'made').exists()
    assert status['precompile'] == 'done: 1 of 2 (not: bench/bf16/m/broken)'
    assert rows[0]['seconds'] < 3.9  # the two 2-second compiles ran side by side
    for warm in ('bench/bf16/m/defaults', 'profile/m', 'throughput/m/default'):
        assert status[warm] == 'done'
    for cold in ('bench/bf16/m/broken', 'bench/bf16/other/defaults', 'gpu_check'):
        assert status[cold].startswith('not run (needs ~9 s')
    assert next(r for r in rows if r['item'] == 'profile/m')['estimate'] == 4  # 9 halved
    assert 'time.sleep(2)' in (out / 'logs' / 'precompile_bench_bf16_m_broken.log').read_text()
    index = json.loads((out / 'measurements.json').read_text())
    assert index['items'][0]['item'] == 'precompile'


def test_precompile_is_stopped_when_its_time_ends(tmp_path):
    def stand_in(item, out_dir):
        return [sys.executable, '-c', 'import time; time.sleep(60)']
    rows = gm.main(['--out-dir', str(tmp_path), '--budget', '3', '--precompile', '1'],
                   items=[('bench/bf16/m/defaults', 1, ['-c', 'pass'])],
                   precompile_command_of=stand_in)
    assert rows[0]['status'] == 'done: 0 of 1 (not: bench/bf16/m/defaults)'
    assert rows[0]['seconds'] < 30
    assert rows[1]['status'].startswith('not run')  # the budget is spent


def test_a_negative_precompile_or_a_budget_of_nothing_is_refused(capsys):
    with pytest.raises(SystemExit):
        gm.parse_args(['--precompile', '-1'])
    assert '--precompile -1: give how many items' in capsys.readouterr().err
    for budget in ('0', '-5'):  # before: nothing run, a table of "not run" rows, exit 0
        with pytest.raises(SystemExit):
            gm.parse_args(['--budget', budget])
        assert f'--budget {budget}: give the seconds' in capsys.readouterr().err
