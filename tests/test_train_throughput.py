"""tools/analysis/train_throughput.py and the JPEG data it generates (numbers are not asserted:
speed is measured by the tool)."""
import json
import math
import os
import time

import pytest
from mmengine.hooks import Hook
from PIL import Image

from tools.analysis.train_throughput import fed_by, loader_table, main, parse_args
from tools.dataset_converters.make_synthetic_imagenet import make_synthetic_imagenet

from .runner_utils import DEMO_CONFIG


def test_synthetic_imagenet_layout_and_jpeg_size(tmp_path):
    r = make_synthetic_imagenet(str(tmp_path), num_train=12, num_val=3, num_classes=4,
                                size=(500, 375), workers=1)
    train = (tmp_path / 'meta' / 'train.txt').read_text().split('\n')[:-1]
    assert len(train) == 12 and train[5] == 'n00000001/n00000001_000005.JPEG 1'
    assert (tmp_path / 'meta' / 'classes.txt').read_text().split() == [
        f'n{i:08d}' for i in range(4)]
    assert len((tmp_path / 'meta' / 'val.txt').read_text().split('\n')[:-1]) == 3
    with Image.open(tmp_path / 'train' / 'n00000001' / 'n00000001_000005.JPEG') as img:
        assert img.format == 'JPEG' and img.size == (500, 375) and img.mode == 'RGB'
    assert 60e3 < r['mean_bytes'] < 200e3  # about an ImageNet photograph's file


def test_a_data_set_of_ones_own_is_never_overwritten(tmp_path):
    """Before: ``--data`` pointing at a smaller real data set rewrote its meta/train.txt,
    emptied its val.txt and mixed generated images into its train/ folder."""
    from tools.analysis.train_throughput import ensure_data
    mine = tmp_path / 'mine'
    (mine / 'meta').mkdir(parents=True)
    (mine / 'meta' / 'train.txt').write_text('cat/1.jpg 0\ndog/2.jpg 1\n')
    (mine / 'meta' / 'val.txt').write_text('3.jpg 0\n')
    before = sorted(p.relative_to(mine) for p in mine.rglob('*'))
    with pytest.raises(SystemExit, match=r'--data .*mine: 8 training images are needed and '
                                         r'it has 2; it is not written into'):
        ensure_data(str(mine), 8, '32x24')
    with pytest.raises(FileExistsError, match='no SYNTHETIC_IMAGENET marker'):
        make_synthetic_imagenet(str(mine), num_train=8, num_val=0, num_classes=2, workers=1)
    assert sorted(p.relative_to(mine) for p in mine.rglob('*')) == before
    assert (mine / 'meta' / 'val.txt').read_text() == '3.jpg 0\n'
    # generated folders (marked) are topped up; enough images are used as they are
    made = tmp_path / 'made'
    ensure_data(str(made), 4, '32x24')
    ensure_data(str(made), 6, '32x24')
    assert len((made / 'meta' / 'train.txt').read_text().split('\n')[:-1]) == 6
    stamp = (made / 'meta' / 'train.txt').stat().st_mtime_ns
    ensure_data(str(made), 5, '32x24')
    assert (made / 'meta' / 'train.txt').stat().st_mtime_ns == stamp


def test_fed_by_picks_the_fewest_workers_near_the_best():
    rows = [dict(workers=2, img_per_s=500, data_share=0.40),
            dict(workers=4, img_per_s=980, data_share=0.03),
            dict(workers=8, img_per_s=1000, data_share=0.01)]
    assert fed_by(rows) == 4
    rows[1]['data_share'] = 0.08  # fast enough, but still waiting for data
    assert fed_by(rows) == 8
    assert fed_by([dict(workers=1, img_per_s=10, data_share=0.5)]) is None


def test_throughput_runs_train_py_per_worker_count(tmp_path, capsys):
    step = tmp_path / 'step.json'
    step.write_text(json.dumps(dict(steps={'hat-mm': dict(img_per_s=100.0)})))
    rows = main([DEMO_CONFIG, '--workers', '0', '1', '--batch-size', '4', '--iters', '4',
                 '--skip', '1', '--data', str(tmp_path / 'data'), '--image-size', '64x48',
                 '--work-dir', str(tmp_path / 'work'), '--step-json', str(step)])
    assert [r['workers'] for r in rows] == [0, 1]
    assert all(r['timed_iters'] == 3 and r['img_per_s'] > 0 and 0 <= r['data_share'] < 1
               for r in rows)
    report = json.loads((tmp_path / 'work' / 'throughput.json').read_text())
    assert report['rows'] == rows and report['step_img_per_s'] == 100.0
    text = (tmp_path / 'work' / 'throughput.md').read_text()
    assert f"| 1 | {rows[1]['img_per_s']:.0f} |" in text
    assert f"{rows[0]['img_per_s'] / 100:.2f} |" in text


def test_loader_only_times_the_configs_data_loader_per_worker_count(tmp_path):
    data = str(tmp_path / 'data')
    rows = main([DEMO_CONFIG, '--loader-only', '--workers', '0', '2', '--batch-size', '4',
                 '--iters', '6', '--skip', '1', '--data', data, '--image-size', '64x48',
                 '--work-dir', str(tmp_path / 'work'), '--feed', '100', '1000'])
    # 6 batches: the first one (0 workers) or each worker's first (2 workers) is not timed
    assert [(r['workers'], r['timed_iters']) for r in rows] == [(0, 5), (2, 4)]
    assert rows[1]['img_per_s_per_worker'] == rows[1]['img_per_s'] / 2
    text = (tmp_path / 'work' / 'loader.md').read_text()
    assert '| img/s per worker | ms to take a ready batch | workers for 100 img/s | ' \
        'workers for 1000 img/s |' in text
    need = [math.ceil(f / rows[1]['img_per_s_per_worker']) for f in (100, 1000)]
    # with workers: the loading process's time to take a batch they have made
    assert 'fetch_ms' not in rows[0] and rows[1]['fetch_ms'] > 0
    assert f"| 0 | {rows[0]['img_per_s']:.0f} | {rows[0]['img_per_s_per_worker']:.0f} | - |" \
        in text
    assert f"| 2 | {rows[1]['img_per_s']:.0f} | {rows[1]['img_per_s_per_worker']:.0f} | " \
        f"{rows[1]['fetch_ms']:.1f} | {need[0]} | {need[1]} |" in text
    report = json.loads((tmp_path / 'work' / 'loader.json').read_text())
    assert report['rows'] == rows and report['feed'] == [100, 1000]


@pytest.mark.parametrize('argv, message', [
    (['--feed', '500'], '--feed goes with --loader-only'),
    (['--loader-only', '--workers', '8', '--iters', '8', '--skip', '2'],
     '--iters 8 must be larger than the largest --workers 8'),
])
def test_loader_only_arguments_are_checked(argv, message, capsys):
    with pytest.raises(SystemExit):
        main([DEMO_CONFIG, *argv])
    assert message in capsys.readouterr().err


def test_loader_table_marks_more_workers_than_cores(monkeypatch):
    monkeypatch.setattr(os, 'cpu_count', lambda: 4)
    args = parse_args([DEMO_CONFIG, '--loader-only', '--workers', '4', '8', '--iters', '20'])
    rows = [dict(workers=4, img_per_s=1000.0, img_per_s_per_worker=250.0),
            dict(workers=8, img_per_s=1200.0, img_per_s_per_worker=150.0)]
    lines = loader_table(args, rows, [1230]).split('\n')
    assert '| 4 | 1000 | 250 | - | 5 |' in lines  # ceil(1230 / 250)
    assert '| 8 (more than the cores) | 1200 | 150 | - | 9 |' in lines


def test_loader_only_writes_token_label_maps_for_a_volo_config(tmp_path):
    """A pipeline that loads token-label score maps (the VOLO configs) gets random maps of the
    model's label grid beside the generated images, and its loader runs on them."""
    import torch
    volo = os.path.join(os.path.dirname(DEMO_CONFIG), '..', 'hat_volo_d1_224.py')
    data = tmp_path / 'data'
    rows = main([volo, '--loader-only', '--workers', '0', '--batch-size', '2', '--iters', '3',
                 '--skip', '1', '--data', str(data), '--image-size', '64x48',
                 '--work-dir', str(tmp_path / 'work')])
    assert rows[0]['timed_iters'] == 2 and rows[0]['img_per_s'] > 0
    train = (data / 'meta' / 'train.txt').read_text().split()[0::2]
    maps = [torch.load(data / 'token_labels' / (os.path.splitext(rel)[0] + '.pt'),
                       weights_only=True) for rel in train]
    assert len(maps) == 6 and all(m.shape == (2, 5, 14, 14) and m.dtype == torch.float16
                                  for m in maps)
    assert all(0 <= m[1].min() and m[1].max() < 1000 for m in maps)


class _Slow(Hook):
    """Waits in known places: the data preprocessor (0.04 s), after each iteration (0.03 s)
    and before each one (0.02 s, which belongs to the wait for the next batch)."""
    priority = 'VERY_HIGH'  # its before_run wraps the preprocessor before the breakdown does

    def before_run(self, runner):
        pre = runner.model.data_preprocessor
        forward = pre.forward

        def slow_forward(*args, **kwargs):
            time.sleep(0.04)
            return forward(*args, **kwargs)
        pre.forward = slow_forward

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        time.sleep(0.02)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        time.sleep(0.03)


def test_iteration_breakdown_puts_each_wait_in_its_part(digits_root, tmp_path):
    from mmengine.registry import HOOKS

    from hat_mm.engine import HATRunner
    from tools.analysis.iteration_breakdown import RESULT_FILE, IterationBreakdownHook

    from .runner_utils import demo_train_cfg
    if '_Slow' not in HOOKS:
        HOOKS.register_module(module=_Slow)
    cfg = demo_train_cfg(digits_root, tmp_path, 'breakdown', max_epochs=2, validate=False,
                         custom_hooks=[dict(type='_Slow'),
                                       dict(type='IterationBreakdownHook', skip=1)])
    runner = HATRunner.from_cfg(cfg)
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, IterationBreakdownHook))
    assert len(hook.records) == 5  # 6 iterations, the first not timed
    for r in hook.records:
        assert r['data_preprocessor'] >= 0.04 and r['hook:_Slow'] >= 0.03
        assert r['data_wait'] >= 0.02
        assert r['train_step'] > 0  # the HAT passes, without the preprocessor's 0.04 s
        assert abs(r['other']) < 0.02  # nothing of the waits is left unattributed
        assert r['hook:NonFiniteCheckHook'] > 0 and 'hook:IterTimerHook' in r
        assert r['iteration'] == pytest.approx(sum(v for k, v in r.items() if k != 'iteration'))
    saved = json.loads((tmp_path / RESULT_FILE).read_text())
    assert saved['timed_iters'] == 5 and saved['median_s'] == pytest.approx(hook.medians())


def test_throughput_breakdown_adds_the_table(tmp_path):
    rows = main([DEMO_CONFIG, '--breakdown', '--workers', '0', '--batch-size', '4', '--iters',
                 '4', '--skip', '1', '--data', str(tmp_path / 'data'), '--image-size',
                 '64x48', '--work-dir', str(tmp_path / 'work')])
    parts = rows[0]['breakdown_s']
    assert {'data_wait', 'data_preprocessor', 'train_step', 'hook:NonFiniteCheckHook',
            'other', 'iteration'} <= set(parts)
    text = (tmp_path / 'work' / 'throughput.md').read_text()
    assert f"| train_step | {1e3 * parts['train_step']:.1f} |" in text
    config = (tmp_path / 'work' / 'workers0' / 'config_with_breakdown.py').read_text()
    assert 'IterationBreakdownHook' in config and 'tools.analysis.iteration_breakdown' in config
