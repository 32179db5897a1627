"""Checkpoint errors name the file and the problem; nothing is loaded on a mismatch."""

import os

import pytest
import torch

from hat_mm.utils import CheckpointError, check_checkpoint_file, load_weights_strict

from .helpers import tiny_vit_classifier
from .runner_utils import DEMO_CONFIG, small_run_options, train


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match=r'checkpoint .*nope.pth does not exist. Check '
                                              r'the path.$'):
        check_checkpoint_file(str(tmp_path / 'nope.pth'))
    with pytest.raises(CheckpointError, match='latest checkpoint of --work-dir'):
        check_checkpoint_file(str(tmp_path / 'nope.pth'), 'resume checkpoint')
    # a folder (a work dir) given for a checkpoint: said so, not "does not exist"
    with pytest.raises(CheckpointError, match=r'is a folder, not a checkpoint file: give a '
                                              r'.pth file in it'):
        check_checkpoint_file(str(tmp_path))
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.arange(4000.)}}, good)
    check_checkpoint_file(str(good))
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match='truncated.pth is corrupt'):
        check_checkpoint_file(str(truncated))
    flipped = bytearray(good.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF  # one damaged byte inside the tensor data
    damaged = tmp_path / 'damaged.pth'
    damaged.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match='damaged.pth is corrupt'):
        check_checkpoint_file(str(damaged))
    text = tmp_path / 'page.pth'
    text.write_text('<html>404 Not Found</html>')
    with pytest.raises(CheckpointError, match='page.pth is corrupt'):
        check_checkpoint_file(str(text))


def test_mismatched_checkpoint_is_reported_by_name(tmp_path):
    model = tiny_vit_classifier()
    state = model.state_dict()
    state.pop('backbone.ln1.weight')
    state['head.layers.head.weight'] = torch.zeros(7, 32)
    state['neck.extra'] = torch.zeros(1)
    path = tmp_path / 'other.pth'
    torch.save({'state_dict': state}, path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_weights_strict(model, str(path))
    msg = str(err.value)
    assert 'missing in checkpoint: backbone.ln1.weight' in msg
    assert 'not in model: neck.extra' in msg
    assert 'head.layers.head.weight: checkpoint (7, 32) vs model (5, 32)' in msg
    for k, v in model.state_dict().items():  # nothing was loaded
        assert torch.equal(v, before[k])
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {('module.' + k): v * 0 for k, v in before.items()}}, good)
    load_weights_strict(model, str(good))  # DDP 'module.' prefixes are accepted
    assert all(not v.any() for v in model.state_dict().values())


def test_resume_from_corrupt_checkpoint_fails_before_training(digits_root, tmp_path):
    bad = tmp_path / 'epoch_9.pth'
    bad.write_bytes(b'\x00' * 100)
    res = train(DEMO_CONFIG, tmp_path / 'w', small_run_options(digits_root),
                extra=['--resume', str(bad)])
    assert res.returncode != 0
    assert f'resume checkpoint {bad} is corrupt' in res.stdout
    assert bad.read_bytes() == b'\x00' * 100


def test_pretrained_keys_are_compared_by_name(tmp_path):
    from hat_mm.engine import compare_with_checkpoint
    model = tiny_vit_classifier()
    full = {f'backbone.{k}': v for k, v in model.backbone.state_dict().items()}
    full['head.layers.head.weight'] = torch.zeros(5, 32)
    path = tmp_path / 'pretrain.pth'
    torch.save({'state_dict': full}, path)
    ok = compare_with_checkpoint(model.backbone, str(path), 'backbone.')
    assert ok == dict(missing=[], unexpected=[], shape=[])  # the head is not the backbone's

    broken = dict(full)
    broken.pop('backbone.ln1.weight')
    broken['backbone.pos_embed'] = torch.zeros(1, 3, 32)
    torch.save({'state_dict': broken}, path)
    res = compare_with_checkpoint(model.backbone, str(path), 'backbone.')
    assert res['missing'] == ['ln1.weight'] and res['unexpected'] == []
    assert res['shape'] == ['pos_embed: checkpoint (1, 3, 32) vs model (1, 17, 32)']
    assert compare_with_checkpoint(model.backbone, str(path), 'backbone.',
                                   allow_missing=['ln1.'])['missing'] == []
    with pytest.raises(CheckpointError, match="no key starting with prefix='encoder.'"):
        compare_with_checkpoint(model.backbone, str(path), 'encoder.')


def test_missing_pretrained_checkpoint_is_named_with_the_fix(tmp_path):
    from mmengine.config import Config

    from hat_mm.utils import check_pretrained_paths
    cfg = Config(dict(model=dict(
        type='X', backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=str(
            tmp_path / 'missing.pth'), prefix='backbone.')),
        neck=dict(init_cfg=[dict(type='Xavier'), dict(type='Pretrained',
                                                      checkpoint='s3://bucket/remote.pth')]))))
    with pytest.raises(FileNotFoundError) as err:
        check_pretrained_paths(cfg)
    assert str(tmp_path / 'missing.pth') in str(err.value)
    assert '--cfg-options model.backbone.init_cfg.checkpoint=' in str(err.value)
    # present but corrupt, or a timm release not converted: refused before anything is
    # built (before: a raw torch error, or mmengine's AssertionError when training started)
    (tmp_path / 'missing.pth').write_bytes(b'x')
    with pytest.raises(CheckpointError, match=r'model.backbone.init_cfg.checkpoint .*'
                                              r'missing.pth is corrupt'):
        check_pretrained_paths(cfg)
    torch.save({'state_dict': {'patch_embed.proj.weight': torch.zeros(2, 3, 4, 4),
                               'blocks.0.norm1.weight': torch.zeros(2)}},
               tmp_path / 'missing.pth')
    with pytest.raises(CheckpointError, match=r"no key starting with prefix='backbone.' \(its "
                                              r'first keys: patch_embed.proj.weight, .*'
                                              r'timm_to_mmpretrain.py SRC DST'):
        check_pretrained_paths(cfg)
    torch.save({'state_dict': {'backbone.patch_embed.projection.weight':
                               torch.zeros(2, 3, 4, 4)}}, tmp_path / 'missing.pth')
    check_pretrained_paths(cfg)  # local file fits its prefix, remote path left to the backend
    # a checkpoint set on an init_cfg that is not Pretrained (mmengine: KeyError 'type' when
    # training starts), as `--cfg-options model.backbone.init_cfg.checkpoint=...` makes one
    cfg.model.backbone.init_cfg = dict(checkpoint=str(tmp_path / 'missing.pth'))
    with pytest.raises(ValueError, match=r"model.backbone.init_cfg names checkpoint=.* its type "
                                         r"is None: .* --cfg-options model.backbone.init_cfg."
                                         r'type=Pretrained model.backbone.init_cfg.prefix'):
        check_pretrained_paths(cfg)


def test_dataset_and_evaluator_paths_name_the_layout_and_fix(tmp_path):
    from mmengine.config import Config

    from hat_mm.utils import check_dataset_paths, check_evaluator_files
    cfg = Config(dict(
        train_dataloader=dict(dataset=dict(type='CocoDataset', data_root=str(tmp_path / 'c'))),
        val_dataloader=dict(dataset=dict(type='RepeatDataset', dataset=dict(
            type='ADE20KDataset', data_root=str(tmp_path / 'a')))),
        val_evaluator=[dict(type='CocoMetric', ann_file=str(tmp_path / 'ann.json'))]))
    with pytest.raises(FileNotFoundError, match='make_tiny_coco.py') as err:
        check_dataset_paths(cfg, ['train_dataloader'])
    assert 'instances_{train,val}2017.json' in str(err.value)
    with pytest.raises(FileNotFoundError, match='make_tiny_ade20k.py') as err:
        check_dataset_paths(cfg, ['val_dataloader'])
    assert '--cfg-options val_dataloader.dataset.dataset.data_root=' in str(err.value)
    # both missing: one message naming both, with one line that sets both
    with pytest.raises(FileNotFoundError) as err:
        check_dataset_paths(cfg, ['train_dataloader', 'val_dataloader'])
    assert f"val_dataloader.dataset.dataset.data_root='{tmp_path / 'a'}' does not exist " \
        'either' in str(err.value)
    assert ('--cfg-options train_dataloader.dataset.data_root=/path/to/data '
            'val_dataloader.dataset.dataset.data_root=/path/to/data.') in str(err.value)
    with pytest.raises(FileNotFoundError, match=r'val_evaluator\.0\.ann_file='):
        check_evaluator_files(cfg, ['val_evaluator'])
    (tmp_path / 'ann.json').write_text('{}')
    check_evaluator_files(cfg, ['val_evaluator'])


@pytest.mark.parametrize('saved_scale', [None, 1024.0])
def test_resuming_a_bf16_run_with_fp16_starts_a_new_loss_scale(tmp_path, saved_scale):
    """``--amp bf16`` saves its (disabled) loss scaler as an empty state, which torch's
    GradScaler refuses; resumed with fp16 loss scaling, the scale starts afresh and the
    optimizer state resumes. A saved scale (an fp16 run) is still restored."""
    from types import SimpleNamespace

    from mmengine.optim import AmpOptimWrapper

    from hat_mm.engine.resume import prepare_resume
    model = tiny_vit_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sum(p.sum() for p in model.parameters()).backward()
    optimizer.step()
    scaler_state = (torch.amp.GradScaler('cpu', enabled=False).state_dict() if saved_scale is None
                    else torch.amp.GradScaler('cpu', init_scale=saved_scale).state_dict())
    path = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {},
                'optimizer': dict(optimizer.state_dict(), loss_scaler=scaler_state)}, path)

    def fp16_runner():
        warnings = []
        wrapper = SimpleNamespace(
            loss_scaler=torch.amp.GradScaler('cpu'),  # enabled, as fp16's on a GPU
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
        return SimpleNamespace(_has_loaded=False, _resume=True, _load_from=str(path),
                               work_dir=str(tmp_path), model=model, optim_wrapper=wrapper,
                               logger=SimpleNamespace(warning=warnings.append, info=print),
                               warnings=warnings)

    runner = fp16_runner()
    if saved_scale is None:  # what mmengine's resume would meet without the check
        with pytest.raises(RuntimeError, match='empty'):
            AmpOptimWrapper.load_state_dict(runner.optim_wrapper,
                                            torch.load(path)['optimizer'])
        runner = fp16_runner()
    prepare_resume(runner)
    AmpOptimWrapper.load_state_dict(runner.optim_wrapper, torch.load(path)['optimizer'])
    scaler = runner.optim_wrapper.loss_scaler
    assert scaler.get_scale() == (saved_scale or 2.0**16)
    assert len(runner.warnings) == (saved_scale is None)
    if saved_scale is None:
        assert 'loss scale starts afresh' in runner.warnings[0]
    resumed = runner.optim_wrapper.optimizer.state_dict()['state']
    for key, value in optimizer.state_dict()['state'].items():
        torch.testing.assert_close(resumed[key]['momentum_buffer'], value['momentum_buffer'])


@pytest.mark.parametrize('size', ['t', 's', 'b'])
def test_missing_downstream_checkpoint_names_the_pretraining_config_of_its_size(size):
    """The downstream configs' default checkpoint is work_dirs/hat_swin_<size>/epoch_310.pth:
    the fix names configs/hat_swin_<size>.py, the config that writes it."""
    from mmengine.config import Config

    from hat_mm.utils import check_pretrained_paths
    from .runner_utils import ROOT
    name = f'upernet_hat-swin-{size}-p4-w7_8xb2-160k_ade20k-512x512.py'
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'downstream', name))
    assert cfg.model.backbone.init_cfg.checkpoint == f'work_dirs/hat_swin_{size}/epoch_310.pth'
    with pytest.raises(FileNotFoundError) as err:
        check_pretrained_paths(cfg)
    assert f'bash tools/dist_train.sh configs/hat_swin_{size}.py 8' in str(err.value)
    others = {'t', 's', 'b'} - {size}
    assert not any(f'configs/hat_swin_{o}.py' in str(err.value) for o in others)


def test_mapped_load_for_shape_checks_gives_the_same_checkpoint(tmp_path):
    """``load_checkpoint_file(mmap=True)`` (the resume, load_from and pretrained-key checks):
    the same content as the plain load, for a zip checkpoint with mmengine's message hub and
    for a legacy-format one (which cannot be mapped)."""
    from mmengine.logging import HistoryBuffer

    from hat_mm.utils import load_checkpoint_file
    state = {'w': torch.randn(3, 4), 'b': torch.arange(5)}
    buffer = HistoryBuffer()
    buffer.update(1.5)
    for name, legacy in (('zip.pth', False), ('legacy.pth', True)):
        path = str(tmp_path / name)
        torch.save({'state_dict': state, 'meta': {'epoch': 2}, 'hub': buffer}, path,
                   _use_new_zipfile_serialization=not legacy)
        plain, mapped = load_checkpoint_file(path), load_checkpoint_file(path, mmap=True)
        assert mapped['meta'] == plain['meta'] == {'epoch': 2}
        assert mapped['hub'].current() == 1.5
        for k, v in state.items():
            assert torch.equal(mapped['state_dict'][k], v)
            assert torch.equal(plain['state_dict'][k], v)
