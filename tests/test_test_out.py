"""tools/test.py --out into a folder that does not exist yet: the folder is made (as
mmengine's dump does), not a FileNotFoundError after the whole evaluation."""
import json
import sys

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from .runner_utils import DEMO_CONFIG, run_tool, small_run_options


def test_out_in_a_new_folder_is_written(digits_root, tmp_path):
    from mmpretrain.registry import MODELS

    from hat_mm.engine import apply_hat
    init_default_scope('mmpretrain')
    model = MODELS.build(apply_hat(Config.fromfile(DEMO_CONFIG)).model)
    ckpt = tmp_path / 'random.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)
    out = tmp_path / 'new' / 'folder' / 'metrics.json'
    res = run_tool([sys.executable, 'tools/test.py', DEMO_CONFIG, str(ckpt), '--work-dir',
                    str(tmp_path / 'work'), '--out', str(out), '--cfg-options',
                    *small_run_options(digits_root, val_images=16)])
    assert res.returncode == 0, res.stdout[-3000:]
    assert 0.0 <= json.loads(out.read_text())['accuracy/top1'] <= 100.0


def test_out_that_is_a_folder_is_refused_before_testing(digits_root, tmp_path):
    res = run_tool([sys.executable, 'tools/test.py', DEMO_CONFIG, str(tmp_path / 'x.pth'),
                    '--out', str(tmp_path), '--cfg-options',
                    *small_run_options(digits_root, val_images=16)])
    assert res.returncode != 0
    assert f'--out {tmp_path} is a folder; give the path of a JSON file' in res.stdout


def test_out_ending_in_a_slash_or_under_a_file_is_refused_before_testing(tmp_path):
    from tools.test import main
    ckpt = str(tmp_path / 'x.pth')
    new_folder = str(tmp_path / 'results') + '/'
    try:
        main([DEMO_CONFIG, ckpt, '--out', new_folder])
    except SystemExit as err:
        assert 'is a folder; give the path of a JSON file' in str(err)
    else:
        raise AssertionError('an --out ending in / was accepted')
    (tmp_path / 'afile').write_text('x')
    try:
        main([DEMO_CONFIG, ckpt, '--out', str(tmp_path / 'afile' / 'm.json')])
    except SystemExit as err:
        assert 'its folder cannot be made' in str(err)
    else:
        raise AssertionError('an --out under a file was accepted')


def test_out_that_cannot_be_written_is_refused_before_testing(tmp_path):
    """Before: the metrics were computed (on ImageNet-C, hours), then open() failed."""
    import os

    import pytest

    from tools.test import main
    ckpt = str(tmp_path / 'x.pth')
    if not os.path.isdir('/proc/self'):
        pytest.skip('needs /proc (Linux), where no file can be created, even by root')
    with pytest.raises(SystemExit, match=r'--out /proc/hat_mm_metrics.json cannot be written'):
        main([DEMO_CONFIG, ckpt, '--out', '/proc/hat_mm_metrics.json'])
    # an --out that is there already is left as it is until the metrics replace it
    kept = tmp_path / 'metrics.json'
    kept.write_text('{"old": 1}')
    with pytest.raises(Exception):  # stops at the missing data or checkpoint
        main([DEMO_CONFIG, ckpt, '--out', str(kept), '--work-dir', str(tmp_path / 'w')])
    assert kept.read_text() == '{"old": 1}'
    new = tmp_path / 'new.json'
    with pytest.raises(Exception):
        main([DEMO_CONFIG, ckpt, '--out', str(new), '--work-dir', str(tmp_path / 'w')])
    assert not new.exists()  # the writability probe leaves nothing behind
