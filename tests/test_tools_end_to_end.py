"""tools/train.py and tools/test.py as a user runs them, on the demo data."""
import glob
import json
import os.path as osp
import sys

import torch

from .runner_utils import DEMO_CONFIG, run_tool, small_run_options, train


def test_train_then_test_demo_config(digits_root, tmp_path):
    work = tmp_path / 'work'
    res = train(DEMO_CONFIG, work, small_run_options(digits_root, epochs=1))
    assert res.returncode == 0, res.stdout[-4000:]
    out = res.stdout
    assert 'HAT: adversarial phase (K=3' in out
    assert 'loss_kl_adv' in out and 'loss_ce_clean' in out  # terms logged separately
    assert 'eta:' in out  # mmengine progress/ETA
    ckpt = work / 'epoch_1.pth'
    assert ckpt.is_file()
    meta = torch.load(ckpt, map_location='cpu')['meta']  # weights_only, default of torch
    assert meta['hat']['adv_iters'] == 3 and meta['hat']['adversarial'] is True

    metrics_file = tmp_path / 'metrics.json'
    res = run_tool([sys.executable, 'tools/test.py', DEMO_CONFIG, str(ckpt), '--work-dir',
                    str(tmp_path / 'test'), '--out', str(metrics_file), '--cfg-options',
                    *small_run_options(digits_root)])
    assert res.returncode == 0, res.stdout[-4000:]
    metrics = json.loads(metrics_file.read_text())
    assert 0.0 <= metrics['accuracy/top1'] <= 100.0
    assert metrics['accuracy/top5'] >= metrics['accuracy/top1']
    assert 'accuracy/top1' in res.stdout


def test_missing_data_root_names_path_and_fix(tmp_path):
    missing = tmp_path / 'no_such_imagenet'
    res = run_tool([sys.executable, 'tools/train.py', DEMO_CONFIG, '--work-dir',
                    str(tmp_path / 'w'), '--cfg-options',
                    f'train_dataloader.dataset.data_root={missing}'])
    assert res.returncode != 0
    assert str(missing) in res.stdout
    assert '--cfg-options train_dataloader.dataset.data_root=' in res.stdout
    assert not glob.glob(str(tmp_path / 'w' / '*.pth'))


def test_corrupt_checkpoint_is_refused_by_test_tool(digits_root, tmp_path):
    bad = tmp_path / 'epoch_3.pth'
    torch.save({'state_dict': {'w': torch.zeros(1000)}}, bad)
    bad.write_bytes(bad.read_bytes()[:-300])  # truncated download
    res = run_tool([sys.executable, 'tools/test.py', DEMO_CONFIG, str(bad), '--cfg-options',
                    *small_run_options(digits_root)])
    assert res.returncode != 0
    assert f'{bad} is corrupt' in res.stdout
    assert osp.getsize(bad) > 0  # left as it was
