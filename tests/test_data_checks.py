"""Data problems are named before anything is built: a top-level ``data_root`` override that
would change nothing, malformed annotation files, labels out of range."""
import os.path as osp
import re

import pytest
from mmengine.config import Config

from hat_mm.utils import check_cfg_options, check_dataset_paths

from .runner_utils import DEMO_CONFIG, ROOT

COCO_CONFIG = osp.join(ROOT, 'configs', 'downstream',
                       'cascade-mask-rcnn_hat-swin-t-p4-w7_fpn_giou-4conv1f_ms-crop-3x_coco.py')


def _suggested_options(message):
    """The ``key=value`` pairs of the --cfg-options line in the error message."""
    line = message.split('--cfg-options ')[-1].strip()
    return dict(pair.split('=', 1) for pair in line.split())


def test_top_level_data_root_is_refused_with_the_keys_that_work(digits_root):
    cfg = Config.fromfile(DEMO_CONFIG)
    with pytest.raises(ValueError, match='would change nothing') as err:
        check_cfg_options(cfg, {'data_root': digits_root})
    suggested = _suggested_options(str(err.value))
    assert suggested == {f'{split}_dataloader.dataset.data_root': digits_root
                         for split in ('train', 'val', 'test')}
    # the suggested line moves every dataloader, and then the top-level key is harmless
    cfg.merge_from_dict(suggested)
    check_dataset_paths(cfg, ['train_dataloader', 'val_dataloader', 'test_dataloader'])
    check_cfg_options(Config.fromfile(DEMO_CONFIG), dict(suggested, data_root=digits_root))
    check_cfg_options(Config.fromfile(DEMO_CONFIG), suggested)  # no data_root: no check


def test_top_level_data_root_of_coco_names_the_evaluator_files():
    cfg = Config.fromfile(COCO_CONFIG)
    with pytest.raises(ValueError) as err:
        check_cfg_options(cfg, {'data_root': '/mnt/coco'})
    suggested = _suggested_options(str(err.value))
    ann = '/mnt/coco/annotations/instances_val2017.json'
    assert suggested == {
        'train_dataloader.dataset.data_root': '/mnt/coco/',
        'val_dataloader.dataset.data_root': '/mnt/coco/',
        'test_dataloader.dataset.data_root': '/mnt/coco/',
        'val_evaluator.ann_file': ann, 'test_evaluator.ann_file': ann}
    # every path that the file derived from its data_root is among them
    old = cfg.data_root.rstrip('/')
    assert cfg.val_evaluator.ann_file.startswith(old) and cfg.val_dataloader.dataset.data_root


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_tools_refuse_top_level_data_root(digits_root, tool, tmp_path):
    """Before: the option was merged, ignored, and the run used data/digits."""
    import importlib
    main = importlib.import_module(f'tools.{tool}').main
    argv = [DEMO_CONFIG] + (['missing.pth'] if tool == 'test' else [])
    with pytest.raises(ValueError,
                       match=re.escape(f'train_dataloader.dataset.data_root={digits_root} ')):
        main(argv + ['--work-dir', str(tmp_path), '--cfg-options', f'data_root={digits_root}'])
