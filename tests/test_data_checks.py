"""Data problems are named: a top-level ``data_root`` override that would change nothing,
malformed annotation files and labels out of range (before anything is built), unreadable
images (by path; skipped and counted when asked)."""
import os.path as osp
import re
import shutil
import warnings
from unittest import mock

import pytest
from mmengine.config import Config

from hat_mm.datasets import (SkipUnreadableImages, UnreadableImageError, UnreadableImagesHook,
                             check_annotation_files, enable_skip_unreadable_images)
from hat_mm.utils import check_cfg_options, check_dataset_paths
from hat_mm.utils.config_checks import READ_TOP_LEVEL_KEYS

from .runner_utils import DEMO_CONFIG, ROOT, small_run_options, train

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


def test_top_level_data_root_without_one_in_the_file_says_so():
    """Before: 'the config file's data_root (None) was already substituted'."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'hat_swin_t.py'))
    assert cfg.get('data_root') is None
    with pytest.raises(ValueError, match='would change nothing: this config has no top-level '
                                         'data_root; its datasets name their own') as err:
        check_cfg_options(cfg, {'data_root': '/mnt/imagenet'})
    assert 'None' not in str(err.value)
    assert _suggested_options(str(err.value)) == {
        f'{split}_dataloader.dataset.data_root': '/mnt/imagenet'
        for split in ('train', 'val', 'test')}


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


def test_top_level_option_typo_is_refused_and_an_unread_variable_warned():
    """Before: ``hatt.adv_iters=2`` was merged as a new key and the run kept K = 3."""
    cfg = Config.fromfile(DEMO_CONFIG)
    with pytest.raises(ValueError, match=r"no top-level key 'hatt'; did you mean 'hat' "
                                         r'\(--cfg-options hat.adv_iters=\.\.\.\)'):
        check_cfg_options(cfg, {'hatt.adv_iters': 2})
    with pytest.raises(ValueError, match="did you mean 'train_dataloader'"):
        check_cfg_options(cfg, {'train_dataloder.batch_size': 2})
    # a misspelt file variable is not "corrected" into another key that changes nothing
    with pytest.warns(UserWarning, match="'train_pipline' is not a key of this config"):
        check_cfg_options(cfg, {'train_pipline.1.scale': 2})
    # read keys pass silently, whether the file has them or not (mmengine's runner reads the
    # DDP / SyncBN / checkpointing switches at the top level)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        check_cfg_options(cfg, {'hat.adv_iters': 2, 'train_dataloader.batch_size': 2,
                                'model_wrapper_cfg.find_unused_parameters': True,
                                'skip_unreadable_images': 0.1, 'compile': True,
                                'find_unused_parameters': True, 'sync_bn': 'torch',
                                'activation_checkpointing': ['backbone'],
                                'efficient_conv_bn_eval': ['backbone']})
    # a variable of the file (already substituted), or a key nothing reads: a warning
    variable = next(k for k in cfg if k not in READ_TOP_LEVEL_KEYS and k != 'data_root')
    with pytest.warns(UserWarning, match=f"'{variable}' is a variable of the config file"):
        check_cfg_options(cfg, {variable: 1})
    with pytest.warns(UserWarning, match="'my_notes' is not a key of this config"):
        check_cfg_options(cfg, {'my_notes': 'x'})


def test_pytorch_launcher_outside_torchrun_names_the_launch_scripts(monkeypatch, tmp_path):
    from tools.train import main
    monkeypatch.delenv('RANK', raising=False)
    with pytest.raises(SystemExit, match='tools/dist_train.sh CONFIG GPUS'):
        main([DEMO_CONFIG, '--work-dir', str(tmp_path / 'w'), '--launcher', 'pytorch'])
    assert not (tmp_path / 'w').exists()


# -- annotation files ------------------------------------------------------------------
def _digits_copy(digits_root, tmp_path):
    root = tmp_path / 'digits'
    shutil.copytree(digits_root, root)
    return root


def _demo_cfg(root, **dataset):
    cfg = Config.fromfile(DEMO_CONFIG)
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = str(root)
    cfg.train_dataloader.dataset.update(dataset)
    return cfg


def test_malformed_annotation_lines_are_named(digits_root, tmp_path):
    root = _digits_copy(digits_root, tmp_path)
    ann = root / 'meta' / 'train.txt'
    lines = ann.read_text().splitlines()
    good = lines[3]
    lines[2] = lines[2].rsplit(' ', 1)[0]  # a path with no label
    lines[5] = lines[5].rsplit(' ', 1)[0] + ' five'
    lines[7] = ''
    lines[9] = lines[9].rsplit(' ', 1)[0] + ' 10'  # 10 classes: labels 0..9
    lines[11] = lines[11].rsplit(' ', 1)[0] + ' -1'
    ann.write_text('\n'.join(lines) + '\n')
    cfg = _demo_cfg(root)
    with pytest.raises(ValueError) as err:
        check_annotation_files(cfg, ['train_dataloader', 'val_dataloader'])
    msg = str(err.value)
    assert msg.startswith('train_dataloader.dataset.ann_file: 5 line(s) of ')
    for lineno, problem in ((3, 'no label'), (6, "label 'five' is not an integer"),
                            (8, 'blank line'), (10, 'label 10 is outside [0, 10)'),
                            (12, 'label -1 is outside [0, 10)')):
        assert f'{ann}:{lineno}: {problem}' in msg
    assert f'{ann}:4:' not in msg and good  # good lines are not reported

    # the model's head bounds the labels too (the loss is what failed mid-training)
    ann.write_text('\n'.join(lines[:2]) + f"\n{lines[9].rsplit(' ', 1)[0]} 9\n")
    cfg.model.head.num_classes = 9
    with pytest.raises(ValueError, match=r'(?s)\(model.head.num_classes=9\).*:3: label 9 is '
                                         r'outside \[0, 9\)'):
        check_annotation_files(cfg, ['train_dataloader'])
    cfg.model.head.num_classes = 10
    check_annotation_files(cfg, ['train_dataloader', 'val_dataloader'])  # all good now


def test_empty_annotation_file_and_no_indices_are_named(digits_root, tmp_path):
    """Before: mmengine's "need at least one array to concatenate" from deep in the dataset."""
    root = _digits_copy(digits_root, tmp_path)
    cfg = _demo_cfg(root)
    cfg.train_dataloader.dataset.indices = 0
    with pytest.raises(ValueError, match=r'train_dataloader.dataset.indices=0: the dataset '
                                         r'would have no image'):
        check_annotation_files(cfg, ['train_dataloader'])
    cfg = _demo_cfg(root)
    (root / 'meta' / 'val.txt').write_text('\n')
    with pytest.raises(ValueError, match=r'val_dataloader.dataset.ann_file: .*val.txt lists '
                                         r'no image \(it is empty\)'):
        check_annotation_files(cfg, ['train_dataloader', 'val_dataloader'])


def test_more_class_folders_than_the_head_has_classes(digits_root, tmp_path):
    root = _digits_copy(digits_root, tmp_path)
    shutil.rmtree(root / 'meta')  # no annotation list: labels from the class folders
    cfg = _demo_cfg(root, metainfo=None)
    cfg.model.head.num_classes = 8
    with pytest.raises(ValueError, match='has 10 class folders.*model.head.num_classes=8'):
        check_annotation_files(cfg, ['train_dataloader'])


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_tools_check_annotation_files_before_building(digits_root, tmp_path, tool):
    """Before: ``not enough values to unpack`` from inside mmpretrain, no file named."""
    import importlib
    root = _digits_copy(digits_root, tmp_path)
    ann = root / 'meta' / 'val.txt'
    ann.write_text(ann.read_text() + 'orphan.png\n')
    n = len(ann.read_text().splitlines())
    argv = [DEMO_CONFIG] + (['missing.pth'] if tool == 'test' else [])
    options = [f'{s}_dataloader.dataset.data_root={root}' for s in ('train', 'val', 'test')]
    with pytest.raises(ValueError, match=re.escape(f'{ann}:{n}: no label')):
        importlib.import_module(f'tools.{tool}').main(
            argv + ['--work-dir', str(tmp_path / 'w'), '--cfg-options', *options])


# -- unreadable images -----------------------------------------------------------------
def test_unreadable_image_is_named_by_the_configs_pipeline(digits_root, tmp_path):
    """The demo config, unedited, loads images through hat_mm's LoadImageFromFile."""
    from mmengine.registry import DATASETS, init_default_scope
    root = _digits_copy(digits_root, tmp_path)
    cfg = _demo_cfg(root)
    init_default_scope('mmpretrain')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    paths = [dataset.get_data_info(i)['img_path'] for i in range(3)]
    open(paths[0], 'wb').close()  # zero bytes: OpenCV's "!buf.empty()" before
    with open(paths[1], 'wb') as f:
        f.write(b'\x89PNG not really')  # truncated/corrupt: decodes to None
    for i in (0, 1):
        with pytest.raises(UnreadableImageError, match=re.escape(f'cannot read image {paths[i]}')):
            dataset[i]
    assert dataset[2]['inputs'].shape == (3, 32, 32)  # readable images load as before


def test_skip_unreadable_images_replaces_and_reports(digits_root, tmp_path):
    from mmengine.registry import init_default_scope
    from mmengine.structures import BaseDataElement
    init_default_scope('mmpretrain')
    root = _digits_copy(digits_root, tmp_path)
    cfg = _demo_cfg(root)
    cfg.skip_unreadable_images = 0.25
    enable_skip_unreadable_images(cfg)
    assert cfg.train_dataloader.dataset.type == 'SkipUnreadableImages'
    hook_cfg = cfg.custom_hooks[-1]
    assert hook_cfg == dict(type='UnreadableImagesHook', max_fraction=0.25)
    dataset = SkipUnreadableImages(cfg.train_dataloader.dataset.dataset)
    bad = [dataset.get_data_info(i)['img_path'] for i in (4, 5)]
    for path in bad:
        open(path, 'wb').close()
    sample = dataset[4]  # 4 and 5 unreadable: sample 6 stands in, carrying their paths
    assert sample['data_samples'].img_path == dataset.get_data_info(6)['img_path']
    assert sample['data_samples'].skipped_unreadable_images == bad
    assert 'skipped_unreadable_images' not in dataset[3]['data_samples']

    hook = UnreadableImagesHook(max_fraction=0.25)
    runner = mock.MagicMock(iter=41)
    clean = [BaseDataElement() for _ in range(7)]
    hook.before_train_epoch(runner)
    hook.before_train_iter(runner, 0, dict(data_samples=clean + [sample['data_samples']]))
    assert hook.count == 2  # 2 of 8 = 0.25: logged, training goes on
    logged = [c.args[0] for c in runner.logger.warning.call_args_list]
    assert logged == [f'Skipped unreadable image {p}' for p in bad]
    with pytest.raises(RuntimeError, match='2 of the 7 images of iteration 42 cannot be read'):
        hook.before_train_iter(runner, 1, dict(data_samples=clean[:6] + [sample['data_samples']]))
    with pytest.raises(ValueError, match='skip_unreadable_images'):
        enable_skip_unreadable_images(Config(dict(skip_unreadable_images=True,
                                                  train_dataloader=dict(dataset=dict()))))


def test_train_skips_unreadable_images_when_asked(digits_root, tmp_path):
    """End to end: a zero-byte image stops a plain run with its path; with
    ``skip_unreadable_images`` the run finishes and logs the path and the epoch count."""
    root = _digits_copy(digits_root, tmp_path)
    bad = root / 'train' / 'digit_0' / 'digit_0_00000.png'  # first line of meta/train.txt
    bad.write_bytes(b'')
    options = small_run_options(root, train_images=32, val_images=16) + [
        'train_dataloader.batch_size=16', 'train_dataloader.sampler.shuffle=False']
    res = train(DEMO_CONFIG, tmp_path / 'plain', options)
    assert res.returncode != 0 and f'cannot read image {bad}' in res.stdout, res.stdout[-3000:]
    res = train(DEMO_CONFIG, tmp_path / 'skip', options + ['skip_unreadable_images=0.1'])
    assert res.returncode == 0, res.stdout[-3000:]
    assert f'Skipped unreadable image {bad}' in res.stdout
    assert 'Epoch 1: skipped 1 unreadable images' in res.stdout


def test_training_set_smaller_than_a_batch_is_named(digits_root, tmp_path):
    """The paper configs drop the last incomplete batch (as the official loader does): with
    fewer images than a batch an epoch has no iteration, which mmengine reported only as
    ``epoch_length must be a positive integer, but got 0``."""
    options = small_run_options(digits_root, train_images=3) + [
        'train_dataloader.batch_size=4', 'train_dataloader.drop_last=True']
    res = train(DEMO_CONFIG, tmp_path / 'w', options, extra=['--no-validate'])
    assert res.returncode != 0
    assert ('train_dataloader gives no batch per epoch: 3 training images (3 per process) are '
            'fewer than one batch of train_dataloader.batch_size=4 with '
            'train_dataloader.drop_last=True') in res.stdout, res.stdout[-3000:]
    assert 'train_dataloader.drop_last=False' in res.stdout
    assert 'epoch_length' not in res.stdout


@pytest.mark.parametrize('launcher, rank_env, first', [
    ('none', {}, True), ('pytorch', {'RANK': '0'}, True), ('pytorch', {'RANK': '3'}, False),
    ('slurm', {'SLURM_PROCID': '0'}, True), ('slurm', {'SLURM_PROCID': '5'}, False),
    ('mpi', {'OMPI_COMM_WORLD_RANK': '1'}, False)])
@pytest.mark.parametrize('tool', ['train', 'test'])
def test_checks_before_the_runner_warn_once_per_job(tool, launcher, rank_env, first,
                                                    monkeypatch, capsys, tmp_path):
    """Before: each process of ``dist_train.sh CONFIG 8`` gave the same config warnings (an
    unread ``--cfg-options`` key, NCCL error handling off) and ``test.py --amp``'s CPU line,
    eight times. Now rank 0 gives them; the run stops here at the missing data either way."""
    import importlib
    for name in ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK'):
        monkeypatch.delenv(name, raising=False)
    for name, value in rank_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv('TORCH_NCCL_ASYNC_ERROR_HANDLING', '0')
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    missing = str(tmp_path / 'no_data')
    argv = [DEMO_CONFIG] + (['missing.pth'] if tool == 'test' else []) + [
        '--launcher', launcher, '--work-dir', str(tmp_path), '--cfg-options', 'my_notes=x',
        f'{tool}_dataloader.dataset.data_root={missing}'] + (['--amp'] if tool == 'test' else [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with pytest.raises((SystemExit, FileNotFoundError, ValueError), match='no_data'):
            importlib.import_module(f'tools.{tool}').main(argv)
    messages = [str(w.message) for w in caught]
    assert any("'my_notes' is not a key of this config" in m for m in messages) == first
    assert any('turns off NCCL error handling' in m for m in messages) == first
    if tool == 'test':
        assert ('--amp without a GPU' in capsys.readouterr().out) == first


def test_config_path_mistakes_are_named(tmp_path, monkeypatch):
    """Before: mmengine's "Only py/yml/yaml/json type are supported now!" for a checkpoint
    given as the config (tools/test.py's arguments swapped), "does not exist" for a folder,
    and a bare FileNotFoundError for a typo."""
    import importlib
    monkeypatch.chdir(ROOT)
    ckpt = tmp_path / 'epoch_1.pth'
    ckpt.write_bytes(b'x')
    test_main = importlib.import_module('tools.test').main
    with pytest.raises(ValueError, match=r'epoch_1.pth is a checkpoint, not a config: the '
                                         r'order is tools/test.py CONFIG CHECKPOINT'):
        test_main([str(ckpt), DEMO_CONFIG, '--work-dir', str(tmp_path)])
    train_main = importlib.import_module('tools.train').main
    with pytest.raises(FileNotFoundError, match='did you mean configs/demo/hat_vit_digits.py'):
        train_main(['configs/demo/hat_vit_digit.py'])
    with pytest.raises(FileNotFoundError, match=r'config configs/demo is a folder: give a '
                                                r'config file \(tools/train.py CONFIG\)'):
        train_main(['configs/demo'])
    notes = tmp_path / 'notes.txt'
    notes.write_text('x')
    with pytest.raises(ValueError, match='is not a config file'):
        train_main([str(notes)])


def test_nested_option_typo_is_refused_and_new_keys_pass():
    """Before: ``train_dataloader.batch_szie=8`` was merged as a new key (DataLoader's
    TypeError when built), ``model.backbone.drop_path_rat=0.1`` changed nothing at all."""
    cfg = Config.fromfile(DEMO_CONFIG)
    for option, meant in (('train_dataloader.batch_szie', 'train_dataloader.batch_size'),
                          ('model.backbone.drop_path_rat', 'model.backbone.drop_path_rate'),
                          ('optim_wrapper.optimizer.typ', 'optim_wrapper.optimizer.type'),
                          ('train_dataloader.dataset.pipeline.1.scal',
                           'train_dataloader.dataset.pipeline.1.scale')):
        with pytest.raises(ValueError, match=rf'did you mean .* \(--cfg-options '
                                             rf'{re.escape(meant)}=\.\.\.\)'):
            check_cfg_options(cfg, {option: 1})
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        check_cfg_options(cfg, {'model.compile.devices': ['cuda'],  # new, like no key there
                                'optim_wrapper.clip_grad.max_norm': 1.0,
                                'train_dataloader.dataset.indices': 16,
                                'train_dataloader.batch_size': 4,
                                'env_cfg.dist_cfg.timeout': 60})


def test_a_work_dir_that_cannot_be_one_is_named_before_anything_is_built(tmp_path):
    """Before: FileExistsError from os.makedirs inside mmengine's Runner."""
    from tools.train import main
    afile = tmp_path / 'afile'
    afile.write_text('x')
    for work_dir, message in ((afile, 'is a file, not a folder'),
                              (afile / 'sub', f'cannot be made or written: {afile} is a file')):
        pattern = re.escape(f'--work-dir {work_dir} ') + '.*' + re.escape(message)
        with pytest.raises(SystemExit, match=pattern):
            main([DEMO_CONFIG, '--work-dir', str(work_dir)])
