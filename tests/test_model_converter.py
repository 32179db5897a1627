"""tools/model_converters/timm_to_mmpretrain.py on release-style files made from timm models.

No downloads: timm 1.x models with random weights are written in the release's timm 0.4.x
layout (for Swin the official layout; the inverse mapping below is checked against timm's own
``checkpoint_filter_fn``), converted, loaded strictly into the models of our configs and
compared logit for logit with timm (Swin-T, ViT-T). Swin-S/B and ViT-S/B are checked for
detection, key mapping and strict loading, without a forward pass (time).
"""
import argparse
import os.path as osp
import re
import sys
from collections import OrderedDict

import pytest
import torch

from hat_mm.utils import CheckpointError, load_weights_strict
from tools.model_converters.common import verify_against_target
from tools.model_converters.timm_to_mmpretrain import (
    ARCHS, build_target_model, convert_checkpoint, convert_state_dict, detect_arch,
    merging_permutation)

from .runner_utils import ROOT, run_tool

timm = pytest.importorskip('timm')

SCRIPT = 'tools/model_converters/timm_to_mmpretrain.py'
TOL = 1e-4


def official_swin_state_dict(model):
    """timm 1.x Swin -> the official / timm 0.4.x layout of the release files.

    Patch merging moves from the start of stage i + 1 to the end of stage i, ``head.fc`` is
    ``head``, and the buffers that the official code saves (``relative_position_index``, the
    shifted blocks' ``attn_mask``) are added.
    """
    out = OrderedDict()
    for k, v in model.state_dict().items():
        m = re.match(r'layers\.(\d+)\.downsample\.(.*)', k)
        if m:
            k = f'layers.{int(m.group(1)) - 1}.downsample.{m.group(2)}'
        k = k.replace('head.fc.', 'head.')
        out[k] = v.clone()
    for name, buf in model.named_buffers():
        if name.endswith('relative_position_index') or name.endswith('attn_mask'):
            out[name] = buf.clone()
    return out


def release_file(path, state_dict, timm_name, **extra):
    torch.save({'state_dict': state_dict, 'epoch': 299, 'arch': timm_name,
                'args': argparse.Namespace(model=timm_name, mean=None, std=None),
                'version': 2, **extra}, path)
    return str(path)


def timm_model(name):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False).eval()


@pytest.fixture(scope='module')
def swin_t():
    model = timm_model('swin_tiny_patch4_window7_224')
    # the sizes of the model's LayerNorms / biases are random too, not 1 / 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.normal_(1.0 if name.endswith('weight') else 0.0, 0.1)
    return model


@pytest.fixture(scope='module')
def vit_t():
    model = timm_model('vit_tiny_patch16_224')
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 or name in ('cls_token', 'pos_embed'):
                p.normal_(1.0 if name.endswith('weight') else 0.0, 0.1)
    return model


def max_logit_error(timm_net, converted_path, arch, n=2):
    model = build_target_model(arch)
    load_weights_strict(model, converted_path)
    model.eval()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, 3, 224, 224, generator=g)
    with torch.no_grad():
        ref = timm_net(x)
        out = model(x, mode='tensor')
    assert out.shape == ref.shape == (n, 1000)
    return (out - ref).abs().max().item()


def test_official_swin_layout_is_what_timm_reads(swin_t):
    """The inverse mapping of this test is right: timm's filter maps it back exactly."""
    from timm.models.swin_transformer import checkpoint_filter_fn
    old = official_swin_state_dict(swin_t)
    assert 'layers.0.downsample.reduction.weight' in old and 'head.weight' in old
    assert 'layers.3.downsample.reduction.weight' not in old
    assert any(k.endswith('attn_mask') for k in old)
    back = checkpoint_filter_fn(old, swin_t)
    own = swin_t.state_dict()
    assert list(back) == list(own)
    assert all(torch.equal(back[k], own[k]) for k in own)
    # the converter also takes timm >= 0.9 Swin state dicts (merging at the next stage's start)
    _, from_old = convert_state_dict(old)
    _, from_new = convert_state_dict(own)
    assert set(from_old) - set(from_new) == {k for k in from_old
                                             if k.endswith('relative_position_index')}
    assert all(torch.equal(from_new[k], from_old[k]) for k in from_new)


def test_patch_merging_permutation_matches_official_concatenation():
    from mmpretrain.models.utils import PatchMerging
    torch.manual_seed(0)
    C, H, W = 6, 4, 6
    official_norm = torch.nn.LayerNorm(4 * C)
    official_reduction = torch.nn.Linear(4 * C, 2 * C, bias=False)
    with torch.no_grad():
        official_norm.weight.normal_(1, 0.2)
        official_norm.bias.normal_(0, 0.2)
    x = torch.randn(2, H * W, C)
    xs = x.view(2, H, W, C)
    cat = torch.cat([xs[:, 0::2, 0::2], xs[:, 1::2, 0::2], xs[:, 0::2, 1::2],
                     xs[:, 1::2, 1::2]], -1).view(2, -1, 4 * C)
    ref = official_reduction(official_norm(cat))
    merging = PatchMerging(C, 2 * C)
    p = merging_permutation(C)
    with torch.no_grad():
        merging.reduction.weight.copy_(official_reduction.weight[:, p])
        merging.norm.weight.copy_(official_norm.weight[p])
        merging.norm.bias.copy_(official_norm.bias[p])
        out, size = merging(x, (H, W))
    assert size == (H // 2, W // 2)
    assert (out - ref).abs().max().item() < 1e-5


def test_swin_t_release_converts_with_equal_logits(swin_t, tmp_path, capsys):
    src = release_file(tmp_path / 'hat_swin_tiny_patch4_window7_224.pth.tar',
                       official_swin_state_dict(swin_t), 'swin_tiny_patch4_window7_224',
                       optimizer={'state': {}, 'param_groups': []})
    dst = str(tmp_path / 'swin_t_mm.pth')
    meta = convert_checkpoint(src, dst)  # arch detected
    assert meta['arch'] == 'swin-t' and meta['config'] == 'configs/hat_swin_t.py'
    assert meta['epoch'] == 299 and meta['timm_args']['mean'] is None
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'}
    assert not any('attn_mask' in k for k in ckpt['state_dict'])
    err = max_logit_error(swin_t, dst, 'swin-t')
    with capsys.disabled():
        print(f'\n[converter] Swin-T max abs logit error: {err:.2e}')
    assert err < TOL


def test_vit_t_release_converts_with_equal_logits(vit_t, tmp_path, capsys):
    from timm.models.vision_transformer import checkpoint_filter_fn
    state = OrderedDict((k, v.clone()) for k, v in vit_t.state_dict().items())
    # timm 1.x ViT keys are the release (0.4.x) keys: timm's filter leaves them as they are
    assert set(checkpoint_filter_fn(state, vit_t)) == set(state)
    src = release_file(tmp_path / 'hat_vit_tiny_patch16_224.pth.tar', state,
                       'vit_tiny_patch16_224')
    dst = str(tmp_path / 'vit_t_mm.pth')
    assert convert_checkpoint(src, dst, arch='vit-t')['arch'] == 'vit-t'
    err = max_logit_error(vit_t, dst, 'vit-t')
    with capsys.disabled():
        print(f'\n[converter] ViT-T max abs logit error: {err:.2e}')
    assert err < TOL


def test_converted_vit_release_evaluates_with_the_config_as_it_is(vit_t, tmp_path, capsys):
    """The official script normalises with the timm model's default config (mean = std = 0.5
    for vit_*_patch16_224); configs/hat_vit_t.py does the same on pixel values, so the
    converted release gives timm's logits on the same images with nothing to override."""
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    from timm.data import resolve_data_config

    from hat_mm.engine import apply_hat
    src = release_file(tmp_path / 'hat_vit_tiny_patch16_224.pth.tar',
                       OrderedDict(vit_t.state_dict()), 'vit_tiny_patch16_224')
    dst = str(tmp_path / 'vit_t_mm.pth')
    capsys.readouterr()
    convert_checkpoint(src, dst, arch='vit-t')
    assert 'note:' not in capsys.readouterr().err  # nothing to tell the user
    cfg = apply_hat(Config.fromfile(osp.join(ROOT, 'configs', 'hat_vit_t.py')))
    model = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor)).eval()
    load_weights_strict(model, dst)
    timm_cfg = resolve_data_config({}, model=vit_t)
    assert timm_cfg['mean'] == timm_cfg['std'] == (0.5, 0.5, 0.5)
    g = torch.Generator().manual_seed(5)
    pixels = torch.randint(0, 256, (2, 3, 224, 224), generator=g, dtype=torch.uint8)  # RGB
    mean = torch.tensor(timm_cfg['mean']).view(1, 3, 1, 1)
    std = torch.tensor(timm_cfg['std']).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = vit_t((pixels.float() / 255 - mean) / std)  # timm's ToTensor + Normalize
        # the config's data preprocessor sees BGR images (to_rgb=True flips them to RGB)
        data = model.data_preprocessor(dict(inputs=list(pixels.flip(1))), False)
        out = model(data['inputs'], mode='tensor')
    assert (out - ref).abs().max().item() < TOL

    # a release trained with other statistics (a deit_* model name) gets the fix printed
    src = release_file(tmp_path / 'deit_tiny.pth.tar', OrderedDict(vit_t.state_dict()),
                       'deit_tiny_patch16_224')
    convert_checkpoint(src, str(tmp_path / 'deit_mm.pth'), arch='vit-t')
    err = capsys.readouterr().err
    assert 'data_preprocessor.mean=[123.675, 116.28, 103.53]' in err


def test_ema_weights_are_converted_on_request(vit_t, tmp_path):
    state = vit_t.state_dict()
    ema = OrderedDict((k, v + 1.0) for k, v in state.items())
    src = release_file(tmp_path / 'hat_vit_tiny_patch16_224.pth.tar', state,
                       'vit_tiny_patch16_224', state_dict_ema=ema)
    dst = str(tmp_path / 'ema.pth')
    assert convert_checkpoint(src, dst, ema=True)['ema'] is True
    out = torch.load(dst, map_location='cpu', weights_only=True)['state_dict']
    assert torch.equal(out['backbone.cls_token'], ema['cls_token'])
    plain = release_file(tmp_path / 'hat_plain.pth.tar', state, 'vit_tiny_patch16_224')
    with pytest.raises(CheckpointError, match='no EMA weights'):
        convert_checkpoint(plain, str(tmp_path / 'x.pth'), ema=True)


@pytest.mark.parametrize('timm_name,arch', [
    ('swin_small_patch4_window7_224', 'swin-s'),
    ('swin_base_patch4_window7_224', 'swin-b'),
    ('vit_small_patch16_224', 'vit-s'),
    ('vit_base_patch16_224', 'vit-b'),
])
def test_larger_models_are_detected_and_mapped(timm_name, arch):
    """S/B: detection, key mapping and a strict load into the config's model (no forward)."""
    net = timm.create_model(timm_name, pretrained=False)
    state = official_swin_state_dict(net) if arch.startswith('swin') else net.state_dict()
    del net
    assert detect_arch(state) == arch
    found, converted = convert_state_dict(state, hint=timm_name)
    assert found == arch
    model = build_target_model(arch)
    target = model.state_dict()
    for k in [k for k in target if k.endswith('relative_position_index')]:
        assert torch.equal(converted[k], target[k])  # official index == mmpretrain's
    verify_against_target(converted, target, arch, ARCHS[arch]['config'])
    model.load_state_dict(converted, strict=True)
    # each other arch refuses these weights, naming what was found
    other = next(a for a in ARCHS if a != arch and a[:3] == arch[:3])
    with pytest.raises(CheckpointError, match=f'expected a {other} checkpoint.*--arch {arch}'):
        convert_state_dict(state, arch=other)


def test_other_architectures_are_refused(swin_t, vit_t, tmp_path):
    vit = release_file(tmp_path / 'hat_vit_tiny_patch16_224.pth.tar', vit_t.state_dict(),
                       'vit_tiny_patch16_224')
    with pytest.raises(CheckpointError) as e:
        convert_checkpoint(vit, str(tmp_path / 'a.pth'), arch='swin-t')
    msg = str(e.value)
    assert 'expected a swin-t checkpoint' in msg and 'ViT, embed dim 192, depth 12' in msg
    assert '--arch vit-t' in msg and 'configs/hat_vit_t.py' in msg
    swin = release_file(tmp_path / 'hat_swin_tiny_patch4_window7_224.pth.tar',
                        official_swin_state_dict(swin_t), 'swin_tiny_patch4_window7_224')
    with pytest.raises(CheckpointError) as e:
        convert_checkpoint(swin, str(tmp_path / 'b.pth'), arch='swin-s')
    msg = str(e.value)
    assert 'expected a swin-s checkpoint' in msg and 'depths 2-2-6-2' in msg
    assert '--arch swin-t' in msg
    assert not (tmp_path / 'a.pth').exists() and not (tmp_path / 'b.pth').exists()
    # a classifier of no supported size: reported with what was found
    odd = OrderedDict((k, v) for k, v in vit_t.state_dict().items()
                      if not k.startswith('blocks.11.'))
    path = release_file(tmp_path / 'hat_vit_tiny_patch16_224_x.pth.tar', odd, 'vit_tiny')
    with pytest.raises(CheckpointError, match='match none of the supported.*depth 11'):
        convert_checkpoint(path, str(tmp_path / 'c.pth'))
    # right sizes, but a key the converter does not know (distilled DeiT)
    dist = OrderedDict(vit_t.state_dict())
    dist['head_dist.weight'] = torch.zeros(1000, 192)
    with pytest.raises(CheckpointError, match='head_dist.weight'):
        convert_state_dict(dist, arch='vit-t')
    # a mismatch found only against the model (another num_classes) names the keys
    state, arch = convert_state_dict(vit_t.state_dict())[1], 'vit-t'
    state['head.layers.head.weight'] = torch.zeros(10, 192)
    target = build_target_model(arch).state_dict()
    with pytest.raises(CheckpointError, match=r'head\.layers\.head\.weight: converted '
                                              r'\(10, 192\) vs model \(1000, 192\)'):
        verify_against_target(state, target, arch, ARCHS[arch]['config'])


def test_corrupt_file_and_same_output_are_refused(vit_t, tmp_path):
    good = release_file(tmp_path / 'hat_vit_tiny_patch16_224.pth.tar', vit_t.state_dict(),
                        'vit_tiny_patch16_224')
    data = bytearray(open(good, 'rb').read())
    bad = tmp_path / 'hat_broken.pth.tar'
    bad.write_bytes(bytes(data[:len(data) // 2]))
    with pytest.raises(CheckpointError, match='hat_broken.pth.tar is corrupt'):
        convert_checkpoint(str(bad), str(tmp_path / 'out.pth'))
    before = open(good, 'rb').read()
    with pytest.raises(CheckpointError, match='is the input checkpoint'):
        convert_checkpoint(good, good)
    # an output that is a folder, or under a file: named before converting (was a traceback)
    with pytest.raises(CheckpointError, match='is a folder; give the path of a .pth file'):
        convert_checkpoint(good, str(tmp_path))
    with pytest.raises(CheckpointError, match='its folder cannot be made'):
        convert_checkpoint(good, str(tmp_path / 'hat_broken.pth.tar' / 'out.pth'))
    assert open(good, 'rb').read() == before


@pytest.mark.parametrize('script', ['timm_to_mmpretrain.py', 'timm_volo_deit_to_mmpretrain.py'])
def test_a_checkpoint_of_train_py_is_said_to_need_no_conversion(script, tmp_path):
    """Before: "the weights match none of the supported architectures", which reads as a
    broken checkpoint; a tools/train.py checkpoint loads as it is, downstream too."""
    src = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': OrderedDict([('backbone.patch_embed.projection.weight',
                                            torch.zeros(96, 3, 4, 4)),
                                           ('head.fc.weight', torch.zeros(1000, 768))]),
                'meta': {}}, src)
    dst = tmp_path / 'converted.pth'
    proc = run_tool([sys.executable, osp.join(ROOT, 'tools', 'model_converters', script),
                     str(src), str(dst)])
    assert proc.returncode == 1 and not dst.exists()
    assert 'needs no conversion' in proc.stdout
    assert f'model.backbone.init_cfg.checkpoint={src}' in proc.stdout


def test_cli_end_to_end(swin_t, tmp_path):
    src = release_file(tmp_path / 'hat_swin_tiny_patch4_window7_224.pth.tar',
                       official_swin_state_dict(swin_t), 'swin_tiny_patch4_window7_224')
    dst = tmp_path / 'out' / 'hat_swin_t.pth'
    proc = run_tool([sys.executable, SCRIPT, src, str(dst), '--arch', 'swin-t'])
    assert proc.returncode == 0, proc.stdout
    assert 'configs/hat_swin_t.py' in proc.stdout
    model = build_target_model('swin-t')
    load_weights_strict(model, str(dst))  # what tools/test.py would load
    with torch.no_grad():
        assert torch.equal(model.head.fc.weight, swin_t.head.fc.weight)
    # refusal through the CLI: non-zero exit, the problem on stderr, nothing written
    wrong = tmp_path / 'wrong.pth'
    proc = run_tool([sys.executable, SCRIPT, src, str(wrong), '--arch', 'vit-b'])
    assert proc.returncode == 1
    assert 'expected a vit-b checkpoint' in proc.stdout and '--arch swin-t' in proc.stdout
    assert not wrong.exists()
    # an existing output is kept unless --overwrite
    before = dst.read_bytes()
    proc = run_tool([sys.executable, SCRIPT, src, str(dst)])
    assert proc.returncode == 1 and 'exists already' in proc.stdout and '--overwrite' in proc.stdout
    assert dst.read_bytes() == before
    dst.write_bytes(b'old')
    proc = run_tool([sys.executable, SCRIPT, src, str(dst), '--overwrite'])
    assert proc.returncode == 0, proc.stdout
    load_weights_strict(build_target_model('swin-t'), str(dst))
