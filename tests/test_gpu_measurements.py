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
