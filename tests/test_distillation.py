"""DeiT-B distilled + HAT (docs/hat_update.md, distillation variant): the config, the release
checkpoint, the frozen teacher, and the HAT update against a plain-PyTorch reference."""
import argparse
import copy
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import OptimWrapper

import hat_mm  # noqa: F401
import hat_mm.models.distillation  # noqa: F401  (registers the distilled classifiers)
from hat_mm import hat_backward
from hat_mm.engine import apply_hat

from .helpers import EPS, paper_config, reference_hat_loop
from .runner_utils import ROOT

DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'hat_vit_digits.py')
CONFIG = osp.join(ROOT, 'configs', 'hat_deit_b_distilled.py')


def test_deit_distilled_config():
    import timm
    from mmpretrain.registry import MODELS
    cfg = paper_config(CONFIG, 'HATDistilledImageClassifier')
    assert cfg.model.backbone.type == 'TimmInitDistilledVisionTransformer'  # timm 0.4's init
    assert cfg.model.backbone.arch == 'deit-base' and cfg.model.backbone.drop_path_rate == 0.1
    assert cfg.model.head.type == 'DeiTClsHead'
    d = cfg.model.distillation_loss
    assert (d.type, d.distillation_type, d.alpha, d.tau) == ('DistillationLoss', 'hard', 0.5,
                                                             1.0)
    assert cfg.model.teacher.model.model_name == 'regnety_160'  # RegNetY-16GF, DeiT's
    assert cfg.train_dataloader.batch_size == 128
    assert cfg.optim_wrapper.optimizer.lr == 1e-3 and cfg.optim_wrapper.clip_grad is None
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys['.dist_token'] == dict(decay_mult=0.0)
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=1024)
    assert cfg.train_cfg.max_epochs == 310
    assert cfg.param_scheduler == [dict(type='TimmCosineLR', cosine_epochs=300,
                                        warmup_epochs=5, warmup_lr=1e-6, min_lr=1e-5)]
    # the official loader's timm batch-mode mixup/cutmix, in the data preprocessor
    assert cfg.model.train_cfg is None  # so no mmpretrain batch augments
    pre = cfg.get('data_preprocessor') or cfg.model.data_preprocessor
    assert (pre.mixup_alpha, pre.cutmix_alpha, pre.mix_prob, pre.switch_prob) == \
        (0.8, 1.0, 1.0, 0.5)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)  # the teacher is not built with the student
        ref = timm.create_model('deit_base_distilled_patch16_224')
    assert model._teacher.module is None
    n = sum(p.numel() for p in model.parameters())
    n_timm = sum(p.numel() for p in ref.parameters())
    print(f'hat_deit_b_distilled: {n / 1e6:.3f}M parameters (timm {n_timm / 1e6:.3f}M)')
    assert n == n_timm and abs(n / 1e6 - 87.3) <= 0.1


def test_deit_distilled_release_reproduces_timm_logits(tmp_path):
    import timm

    from hat_mm.utils import load_weights_strict
    from mmpretrain.registry import MODELS
    from tools.model_converters.timm_volo_deit_to_mmpretrain import convert_checkpoint
    torch.manual_seed(0)
    ref = timm.create_model('deit_base_distilled_patch16_224', pretrained=False).eval()
    with torch.no_grad():  # timm zero-inits the heads
        for head in (ref.head, ref.head_dist):
            head.weight.normal_(0, 0.05)
            head.bias.normal_(0, 0.05)
    src = tmp_path / 'hat_deit_base_distilled_patch16_224.pth.tar'
    torch.save({'epoch': 309, 'arch': 'deit_base_distilled_patch16_224',
                'state_dict': ref.state_dict(),
                'args': argparse.Namespace(model='deit_base_distilled_patch16_224',
                                           distillation_type='hard')}, src)
    dst = tmp_path / 'converted.pth'
    meta = convert_checkpoint(str(src), str(dst))
    assert meta['arch'] == 'deit-b-distilled'
    saved = torch.load(dst, weights_only=True)['state_dict']
    assert not any('teacher' in k for k in saved)

    cfg = apply_hat(Config.fromfile(CONFIG))
    model = MODELS.build(cfg.model)
    load_weights_strict(model, str(dst))
    model.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = ref(x)  # eval: (cls head + dist head) / 2
        got = model(x, mode='tensor')
    err = (got - expected).abs().max().item()
    print(f'deit_base_distilled max logit error {err:.2e}')
    assert err < 1e-4


# ----------------------------------------------------------------------------- demo data
def _tiny_cfgs(digits_root, tmp_path, kind, K=3):
    """A tiny distilled ViT student (configs/demo/hat_vit_digits.py with the distillation
    token) and a tiny ViT teacher saved to a checkpoint."""
    from mmpretrain.registry import MODELS
    arch = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
    teacher_cfg = Config.fromfile(DEMO_CONFIG)
    teacher_cfg.model.backbone.arch = dict(arch, num_layers=1)
    teacher_cfg.model.head.in_channels = 32
    teacher_model_cfg = teacher_cfg.model.to_dict()
    torch.manual_seed(1)
    teacher = MODELS.build(teacher_model_cfg)
    with torch.no_grad():
        teacher.head.layers.head.weight.normal_(0, 0.5)  # a confident, varied teacher
    ckpt = str(tmp_path / 'teacher.pth')
    torch.save({'state_dict': teacher.state_dict()}, ckpt)

    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.model.type = 'DistilledImageClassifier'
    cfg.model.backbone.type = 'DistilledVisionTransformer'
    cfg.model.backbone.arch = arch
    cfg.model.backbone.drop_path_rate = 0.0
    cfg.model.head.type = 'DeiTClsHead'
    cfg.model.head.in_channels = 32
    cfg.model.distillation_loss = dict(type='DistillationLoss', distillation_type=kind,
                                       alpha=0.5, tau=2.0 if kind == 'soft' else 1.0)
    cfg.model.teacher = dict(model=teacher_model_cfg, checkpoint=ckpt)
    cfg.model.data_preprocessor = cfg.data_preprocessor
    cfg.hat = dict(cfg.hat, adv_iters=K)
    cfg.train_dataloader.dataset.data_root = digits_root
    return apply_hat(cfg), teacher


def _demo_batch(cfg, n=8, seed=0):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    init_default_scope('mmpretrain')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    np.random.seed(seed)
    idx = np.random.permutation(len(dataset))[:n]
    return pseudo_collate([dataset[int(i)] for i in idx])


def reference_hat_kd(student, teacher, x, target, kind, K, alpha=0.5, tau=1.0, C=10):
    """docs/hat_update.md with DeiT's distillation loss as CE_k, the teacher fed x + delta_k."""
    params = [p for p in student.parameters() if p.requires_grad]
    y = target * 0.9 + 0.1 / C  # LabelSmoothLoss(0.1, 'original') on the mixup targets

    def fwd(v):
        feats = student.backbone(v)[-1]
        cls_tok, dist_tok = feats
        return student.head.layers.head(cls_tok), student.head.layers.head_dist(dist_tok)

    def ce(cls, dist, v):
        base = (-y * F.log_softmax(cls, -1)).sum(-1).mean()
        with torch.no_grad():
            t = teacher(v, mode='tensor')
        if kind == 'hard':
            kd = F.cross_entropy(dist, t.argmax(1))
        else:
            kd = F.kl_div(F.log_softmax(dist / tau, 1), F.log_softmax(t / tau, 1),
                          reduction='sum', log_target=True) * tau * tau / dist.numel()
        return (1 - alpha) * base + alpha * kd

    return reference_hat_loop(fwd, lambda out, v: ce(*out, v), x, params, K,
                              logits=lambda out: out[0])


@pytest.mark.parametrize('kind', ['hard', 'soft'])
def test_hat_distillation_matches_reference(digits_root, tmp_path, kind):
    from mmpretrain.registry import MODELS
    K = 3
    cfg, teacher = _tiny_cfgs(digits_root, tmp_path, kind, K)
    batch = _demo_batch(cfg)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.train()
    model.set_hat_phase(True)
    ref = copy.deepcopy(model)
    teacher.eval()
    tau = cfg.model.distillation_loss.tau

    def seeded():
        np.random.seed(123)
        torch.manual_seed(123)

    seeded()
    data = ref.data_preprocessor(copy.deepcopy(batch), True)
    x, samples = data['inputs'], data['data_samples']
    target = torch.stack([s.gt_score for s in samples])
    assert not torch.allclose(target.max(-1).values, torch.ones(len(samples)))  # mixed
    grads, ref_deltas = reference_hat_kd(ref, teacher, x, target, kind, K, tau=tau)
    expected = [p.detach() - 0.5 * g for p, g in zip(ref.parameters(), grads)]

    # hat_backward on the preprocessed batch: gradients, deltas, what the teacher sees
    probe = copy.deepcopy(ref)
    seen = []
    probe.teacher.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    probe.zero_grad()
    _, deltas = hat_backward(
        forward=lambda v: probe(v, mode='tensor'), clean_forward=lambda v: probe(v, mode='tensor'),
        classification_loss=lambda out, v: probe.hat_classification_loss(out, samples, v)['loss'],
        inputs=x, backward=lambda loss, last: loss.backward(), hat=probe.hat, num_iters=K,
        logits_of=probe.hat_kl_logits)
    assert len(seen) == K and torch.equal(seen[0], x)
    for used, d, rd in zip(seen[1:], deltas, ref_deltas):
        assert 0 < d.abs().max() <= EPS + 1e-7
        torch.testing.assert_close(d, rd, rtol=0, atol=1e-7)
        torch.testing.assert_close(used, x + d)  # the teacher sees the perturbed input
    for (name, p), g in zip(probe.named_parameters(), grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6, msg=name)

    # the runner's path; the teacher stays frozen, outside the parameters and the state dict
    t_before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.5))
    seeded()
    log_vars = model.train_step(copy.deepcopy(batch), optim)
    for (name, p), e in zip(model.named_parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-4, atol=1e-6, msg=name)
    assert {'loss_cls_base', 'loss_distill', 'loss_kl_adv'} <= set(log_vars)
    for seed in (1, 2):  # a few more iterations
        np.random.seed(seed)
        assert torch.isfinite(model.train_step(copy.deepcopy(batch), optim)['loss'])
    t = model.teacher
    assert not t.training and not any(p.requires_grad for p in t.parameters())
    for k, v in t.state_dict().items():
        torch.testing.assert_close(v, t_before[k])
    own = {id(p) for p in model.parameters()}
    assert not any(id(p) in own for p in t.parameters())
    assert not any('teacher' in k for k in model.state_dict())


def test_teacher_is_not_saved_and_checkpoints_reload(digits_root, tmp_path):
    """Saving / loading / EMA copies work with the teacher kept outside the module tree."""
    from mmpretrain.registry import MODELS

    from hat_mm.utils import load_weights_strict
    cfg, _ = _tiny_cfgs(digits_root, tmp_path, 'hard', K=2)
    model = MODELS.build(cfg.model)
    model.train()
    model.set_hat_phase(True)
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    model.train_step(_demo_batch(cfg, n=4), optim)
    assert model._teacher.module is not None
    ckpt = tmp_path / 'student.pth'
    torch.save({'state_dict': model.state_dict()}, ckpt)
    fresh = MODELS.build(cfg.model)
    load_weights_strict(fresh, str(ckpt))  # strict: same keys, no teacher keys
    assert fresh._teacher.module is None  # the teacher is built only when training needs it
    ema = copy.deepcopy(model)
    assert ema.teacher is model.teacher  # shared, not copied
    # the optimizer saw the student's parameters only
    n_opt = sum(p.numel() for g in optim.optimizer.param_groups for p in g['params'])
    assert n_opt == sum(p.numel() for p in model.parameters())
    # evaluation: DeiT's prediction (mean of both heads), no teacher needed
    fresh.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        cls, dist = fresh.forward_distilled(x)
        torch.testing.assert_close(fresh(x, mode='tensor'), (cls + dist) / 2)


def test_missing_teacher_checkpoint_is_named(digits_root, tmp_path):
    from mmpretrain.registry import MODELS
    cfg, _ = _tiny_cfgs(digits_root, tmp_path, 'hard', K=2)
    cfg.model.teacher.checkpoint = str(tmp_path / 'nope.pth')
    model = MODELS.build(cfg.model)  # building does not need the teacher
    model.train()
    with pytest.raises(Exception, match='nope.pth'):
        model.train_step(_demo_batch(cfg, n=2), OptimWrapper(
            torch.optim.SGD(model.parameters(), lr=0.1)))


def test_train_and_test_tools_with_teacher(digits_root, tmp_path):
    """tools/train.py (HATRunner maps DistilledImageClassifier, optimizer, checkpoint without
    the teacher) and tools/test.py (strict loading, no teacher needed) on the demo data."""
    import json
    import sys

    from .runner_utils import run_tool, small_run_options, train
    cfg, _ = _tiny_cfgs(digits_root, tmp_path, 'hard')
    t = cfg.model.teacher
    config = tmp_path / 'tiny_deit_distilled_digits.py'
    config.write_text(f'''
_base_ = [{DEMO_CONFIG!r}]
model = dict(
    type='DistilledImageClassifier',
    backbone=dict(type='DistilledVisionTransformer', arch={cfg.model.backbone.arch.to_dict()!r},
                  drop_path_rate=0.0),
    head=dict(type='DeiTClsHead', in_channels=32),
    distillation_loss=dict(type='DistillationLoss', distillation_type='hard'),
    teacher=dict(model={t.model.to_dict()!r}, checkpoint={t.checkpoint!r}))
''')
    work = tmp_path / 'work'
    options = small_run_options(digits_root, train_images=32, val_images=32, epochs=1)
    res = train(str(config), work, options)
    assert res.returncode == 0, res.stdout[-4000:]
    assert 'loss_distill' in res.stdout and 'loss_kl_adv' in res.stdout
    ckpt = work / 'epoch_1.pth'
    saved = torch.load(ckpt, map_location='cpu')
    assert 'backbone.dist_token' in saved['state_dict']
    assert not any('teacher' in k for k in saved['state_dict'])
    n_optim = sum(len(g['params']) for g in saved['optimizer']['param_groups'])
    assert n_optim == sum(1 for k in saved['state_dict'] if 'num_batches' not in k)
    metrics_file = tmp_path / 'metrics.json'
    res = run_tool([sys.executable, 'tools/test.py', str(config), str(ckpt), '--work-dir',
                    str(tmp_path / 'test'), '--out', str(metrics_file), '--cfg-options',
                    *options, 'model.teacher.checkpoint=/nonexistent.pth'])
    assert res.returncode == 0, res.stdout[-4000:]  # evaluation never loads the teacher
    assert 0.0 <= json.loads(metrics_file.read_text())['accuracy/top1'] <= 100.0
