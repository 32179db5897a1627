"""The HAT update against an independent plain-PyTorch reference (docs/hat_update.md)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper

from hat_mm import HATConfig, hat_backward, symmetric_kl

from .helpers import (ALPHA, EPS, NUM_CLASSES, W_CE, W_KL, random_batch,
                      reference_hat_loop, tiny_vit_classifier)


def reference_hat(model, x, target, K, loss_kind, eps=EPS, alpha=ALPHA, w_kl=W_KL,
                  w_ce=W_CE):
    """docs/hat_update.md written out with plain torch; returns (param grads, deltas used)."""
    params = [p for p in model.parameters() if p.requires_grad]

    def ce(z):
        if loss_kind == 'hard':
            return F.cross_entropy(z, target)
        if loss_kind == 'smooth':  # mmpretrain LabelSmoothLoss, mode='original', 0.1
            y = F.one_hot(target, NUM_CLASSES).float() * 0.9 + 0.1 / NUM_CLASSES
        else:
            y = target
        return -(y * F.log_softmax(z, -1)).sum(-1).mean()

    return reference_hat_loop(lambda v: model(v, mode='tensor'), lambda z, v: ce(z), x,
                              params, K, eps=eps, alpha=alpha, w_kl=w_kl, w_ce=w_ce)


def _targets(data_samples, loss_kind):
    if loss_kind == 'soft':
        return torch.stack([s.gt_score for s in data_samples])
    return torch.cat([s.gt_label for s in data_samples])


LOSSES = {
    'hard': dict(type='CrossEntropyLoss'),
    'soft': dict(type='CrossEntropyLoss', use_soft=True),
    'smooth': dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
}


@pytest.mark.parametrize('K', [1, 2, 3])
@pytest.mark.parametrize('loss_kind', ['hard', 'soft', 'smooth'])
def test_hat_backward_matches_reference(K, loss_kind):
    model = tiny_vit_classifier(hat=dict(adv_iters=K), loss=LOSSES[loss_kind])
    model.train()
    data = model.data_preprocessor(random_batch(soft=loss_kind == 'soft'), True)
    x, samples = data['inputs'], data['data_samples']

    ref_model = copy.deepcopy(model)
    ref_grads, ref_deltas = reference_hat(ref_model, x, _targets(samples, loss_kind), K,
                                          loss_kind)

    model.zero_grad()
    log_vars, deltas = hat_backward(
        forward=lambda v: model(v, mode='tensor'),
        clean_forward=lambda v: model(v, mode='tensor'),
        classification_loss=lambda z, v: model.head._get_loss(z, samples)['loss'],
        inputs=x, backward=lambda loss, last: loss.backward(), hat=model.hat, num_iters=K)

    assert len(deltas) == len(ref_deltas) == K - 1
    for d, rd in zip(deltas, ref_deltas):
        assert d.abs().max() <= EPS + 1e-7
        assert d.abs().max() > 0  # the perturbation really moved
        torch.testing.assert_close(d, rd, rtol=0, atol=1e-7)
    for (name, p), g in zip(model.named_parameters(), ref_grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7, msg=name)
    assert set(log_vars) >= {'loss', 'loss_ce_clean', 'loss_kl_clean'}
    assert ('loss_ce_adv' in log_vars) == (K > 1)


def test_train_step_matches_reference_with_mixup():
    """The runner's path: preprocessing with mixup once, K passes, one SGD step."""
    K = 3
    model = tiny_vit_classifier(hat=dict(adv_iters=K), loss=LOSSES['soft'])
    model.data_preprocessor = type(model.data_preprocessor)(
        num_classes=NUM_CLASSES, mean=[127.5] * 3, std=[60.0] * 3,
        batch_augments=dict(augments=[dict(type='Mixup', alpha=0.8)]))
    model.set_hat_phase(True)
    model.train()
    batch = random_batch(n=8)

    def seeded():
        torch.manual_seed(123)
        import numpy as np
        np.random.seed(123)

    ref_model = copy.deepcopy(model)
    seeded()
    data = ref_model.data_preprocessor(copy.deepcopy(batch), True)
    targets = _targets(data['data_samples'], 'soft')
    assert not torch.allclose(targets.max(-1).values, torch.ones(8))  # really mixed
    ref_grads, _ = reference_hat(ref_model, data['inputs'], targets, K, 'soft')
    expected = [p.detach() - 0.5 * g for p, g in zip(ref_model.parameters(), ref_grads)]

    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.5))
    seeded()
    log_vars = model.train_step(copy.deepcopy(batch), optim)
    for (name, p), e in zip(model.named_parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6, msg=name)
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())  # zeroed
    assert torch.isfinite(log_vars['loss_kl_adv'])


def test_after_adv_phase_is_single_pass_with_kl():
    model = tiny_vit_classifier(hat=dict(adv_iters=3), loss=LOSSES['hard'])
    model.train()
    model.set_hat_phase(False)
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(torch.is_grad_enabled()))
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    log_vars = model.train_step(random_batch(), optim)
    assert calls == [False, True]  # clean no-grad forward + one pass (K = 1)
    assert 'loss_kl_clean' in log_vars and 'loss_ce_adv' not in log_vars

    plain = tiny_vit_classifier(hat=dict(adv_iters=3, kl_after_adv=False), loss=LOSSES['hard'])
    plain.train()
    plain.set_hat_phase(False)
    calls.clear()
    plain.register_forward_hook(lambda m, i, o: calls.append(torch.is_grad_enabled()))
    log_vars = plain.train_step(random_batch(), OptimWrapper(
        torch.optim.SGD(plain.parameters(), lr=0.1)))
    assert calls == [True] and set(log_vars) == {'loss', 'loss_ce_clean'}
    # kl_after_adv=False changes only the phase after adv_epochs: the adversarial one is HAT
    plain.set_hat_phase(True)
    calls.clear()
    log_vars = plain.train_step(random_batch(), OptimWrapper(
        torch.optim.SGD(plain.parameters(), lr=0.1)))
    assert calls == [False, True, True, True] and 'loss_kl_adv' in log_vars


class _ScaledOptimWrapper(OptimWrapper):
    """An OptimWrapper with a CPU GradScaler, as AmpOptimWrapper has on GPU."""

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        self.loss_scaler = torch.amp.GradScaler('cpu', init_scale=scale)

    def backward(self, loss, **kwargs):
        self.loss_scaler.scale(loss).backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs):
        self.loss_scaler.unscale_(self.optimizer)
        if self.clip_grad_kwargs:
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update()


def test_loss_scaling_scales_every_pass_and_keeps_the_update():
    """fp16 loss scaling: every backward is scaled, sign(g) and the update are unchanged."""
    results = []
    for scale in (1.0, 2.0**14):
        model = tiny_vit_classifier(hat=dict(adv_iters=3), loss=LOSSES['hard'])
        model.train()
        model.set_hat_phase(True)
        optim = _ScaledOptimWrapper(scale, optimizer=torch.optim.SGD(
            model.parameters(), lr=0.5), clip_grad=dict(max_norm=0.05))
        seen = []
        orig_scale = optim.loss_scaler.scale
        optim.loss_scaler.scale = lambda t: seen.append(1) or orig_scale(t)
        model.train_step(random_batch(), optim)
        assert len(seen) == 3  # every one of the K backward passes is scaled
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_gradient_clipping_sees_the_accumulated_gradient():
    model = tiny_vit_classifier(hat=dict(adv_iters=3), loss=LOSSES['hard'])
    model.train()
    model.set_hat_phase(True)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1.0),
                         clip_grad=dict(max_norm=0.01))
    norms = []
    orig = optim._clip_grad
    optim._clip_grad = lambda: norms.append(
        torch.norm(torch.stack([p.grad.norm() for p in model.parameters()
                                if p.grad is not None]))) or orig()
    before = [p.detach().clone() for p in model.parameters()]
    ref = copy.deepcopy(model)
    data = ref.data_preprocessor(random_batch(), True)
    grads, _ = reference_hat(ref, data['inputs'], _targets(data['data_samples'], 'hard'), 3,
                             'hard')
    model.train_step(random_batch(), optim)
    total = torch.norm(torch.stack([g.norm() for g in grads]))
    assert len(norms) == 1
    torch.testing.assert_close(norms[0], total, rtol=1e-5, atol=0)
    step = torch.norm(torch.stack([(p.detach() - b).norm()
                                   for p, b in zip(model.parameters(), before)]))
    torch.testing.assert_close(step, torch.tensor(0.01), rtol=1e-4, atol=0)


def test_symmetric_kl_matches_formula_and_is_zero_at_equality():
    torch.manual_seed(0)
    a, b = torch.randn(4, 7), torch.randn(4, 7)
    pa, pb = a.softmax(-1), b.softmax(-1)
    expected = 0.5 * (F.kl_div(pb.log(), pa, reduction='batchmean')
                      + F.kl_div(pa.log(), pb, reduction='batchmean'))
    torch.testing.assert_close(symmetric_kl(pa, b), expected)
    assert symmetric_kl(pa, a).abs() < 1e-6


def test_symmetric_kl_is_the_official_expression_with_its_gradient():
    """Official train.py:823-826: both ``F.kl_div`` terms, the second with the perturbed
    probabilities as the target (a gradient flows through it too), summed over classes,
    averaged over the batch, halved; no temperature."""
    torch.manual_seed(0)
    z_clean = torch.randn(4, 7) * 3
    z = (z_clean + torch.randn(4, 7)).requires_grad_(True)
    official = (F.kl_div(F.log_softmax(z, dim=1), F.softmax(z_clean, dim=1),
                         reduction='none').sum(dim=1)
                + F.kl_div(F.log_softmax(z_clean, dim=1), F.softmax(z, dim=1),
                           reduction='none').sum(dim=1)).mean() / 2
    ours = symmetric_kl(F.softmax(z_clean, dim=1), z)
    torch.testing.assert_close(ours, official)
    torch.testing.assert_close(torch.autograd.grad(ours, z)[0],
                               torch.autograd.grad(official, z)[0])


def test_every_forward_draws_its_own_dropout_and_drop_path_in_train_mode():
    """Official train.py:758,805,816-820: ``model.train()`` once, then the clean forward and
    each of the K passes call the model afresh, in that order: every forward draws its own
    dropout and drop-path masks, the clean one included."""
    K = 3
    model = tiny_vit_classifier(hat=dict(adv_iters=K), loss=LOSSES['hard'], drop_rate=0.2,
                                drop_path_rate=0.3)
    model.train()
    model.set_hat_phase(True)
    batch = random_batch()
    ref = copy.deepcopy(model)
    data = ref.data_preprocessor(copy.deepcopy(batch), True)
    target = _targets(data['data_samples'], 'hard')
    torch.manual_seed(7)
    grads, _ = reference_hat(ref, data['inputs'], target, K, 'hard')
    torch.manual_seed(8)
    other, _ = reference_hat(ref, data['inputs'], target, K, 'hard')
    assert not torch.allclose(grads[0], other[0])  # the masks really are random
    expected = [p.detach() - 0.5 * g for p, g in zip(ref.parameters(), grads)]

    torch.manual_seed(7)
    model.train_step(batch, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.5)))
    for (name, p), e in zip(model.named_parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6, msg=name)


def test_non_finite_input_gradient_step():
    """An fp16 overflow in ``g_k``: official train.py:838 moves ``delta`` by
    ``adv_lr * torch.sign(g)``, and PyTorch's ``sign`` is 0 for NaN (pytorch/pytorch#41245)
    and +-1 for +-inf: a NaN entry does not move, an infinite one moves a full step."""
    model = tiny_vit_classifier(hat=dict(adv_iters=2), loss=LOSSES['hard'])
    model.train()
    data = model.data_preprocessor(random_batch(), True)
    x, samples = data['inputs'], data['data_samples']
    bad = torch.tensor([float('nan'), float('inf'), -float('inf')])

    class Poison(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v):
            return v.view_as(v)

        @staticmethod
        def backward(ctx, g):
            g = g.clone()
            g[0, 0, 0, :3] = bad
            return g

    _, deltas = hat_backward(lambda v: model(Poison.apply(v), mode='tensor'),
                             lambda v: model(v, mode='tensor'),
                             lambda z, v: model.head._get_loss(z, samples)['loss'], x,
                             lambda loss, last: loss.backward(), model.hat, num_iters=2)
    assert torch.isfinite(deltas[0]).all()
    torch.testing.assert_close(deltas[0][0, 0, 0, :3], torch.tensor([0.0, ALPHA, -ALPHA]))
    assert (deltas[0][0, 0, 0, 3:].abs() == ALPHA).all()  # the finite entries: full steps


@pytest.mark.parametrize('field,value', [('adv_eps', -0.1), ('adv_iters', 0),
                                         ('adv_lr', 0.0), ('adv_lr', -1.0),
                                         ('adv_kl_weight', -1.0), ('adv_epochs', -1),
                                         ('adv_iters', 1.5), ('adv_iters', True),
                                         ('adv_ce_weight', -1.0),
                                         ('adv_eps', float('nan')),
                                         ('adv_epochs', 2.0), ('kl_after_adv', 1)])
def test_invalid_hat_parameters_fail_at_model_build_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf'hat\.{field}='):
        tiny_vit_classifier(hat={field: value})


def test_unknown_hat_field_is_named():
    with pytest.raises(ValueError, match='hat.adv_iter'):
        tiny_vit_classifier(hat=dict(adv_iter=3))


def test_defaults_are_the_official_ones():
    h = HATConfig()
    assert (h.adv_iters, h.adv_epochs, h.adv_kl_weight, h.adv_ce_weight) == (3, 200, 0.01, 3.0)
    assert abs(h.adv_eps - 0.00784314) < 1e-8 and abs(h.adv_lr - 1 / 255) < 1e-12


def test_timm_classifier_gets_the_same_update():
    """HATTimmClassifier (any timm model) runs the same update as the reference."""
    import hat_mm  # noqa: F401
    from mmpretrain.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='HATTimmClassifier', model_name='vit_tiny_patch16_224', pretrained=False,
        num_classes=NUM_CLASSES, img_size=16, patch_size=4, depth=2,
        loss=dict(type='CrossEntropyLoss'), hat=dict(adv_iters=3),
        data_preprocessor=dict(type='mmpretrain.ClsDataPreprocessor',
                               num_classes=NUM_CLASSES, mean=[127.5] * 3, std=[60.0] * 3)))
    torch.nn.init.normal_(model.model.head.weight, std=0.5)  # timm zero-inits the head
    model.train()
    model.set_hat_phase(True)
    data = model.data_preprocessor(random_batch(), True)
    ref = copy.deepcopy(model)
    grads, _ = reference_hat(ref, data['inputs'], _targets(data['data_samples'], 'hard'), 3,
                             'hard')
    expected = [p.detach() - 0.5 * g for p, g in zip(ref.parameters(), grads)]
    model.train_step(random_batch(), OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.5)))
    for (name, p), e in zip(model.named_parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6, msg=name)


def test_plain_training_step_through_a_bypassing_wrapper_is_refused():
    """What MMDistributedDataParallel.train_step does (forward mode='loss') must not
    silently train a HAT model without HAT."""
    model = tiny_vit_classifier(loss=LOSSES['hard'])
    model.train()
    data = model.data_preprocessor(random_batch(), True)
    with pytest.raises(RuntimeError, match='HATDistributedDataParallel'):
        model(data['inputs'], data['data_samples'], mode='loss')
    model.eval()  # evaluation code may still compute losses
    assert torch.isfinite(model(data['inputs'], data['data_samples'], mode='loss')['loss'])


def test_high_pass_option_perturbs_only_high_frequencies():
    from hat_mm.frequency import centred_spectrum, radial_mask
    radius = 3
    model = tiny_vit_classifier(hat=dict(adv_iters=3, high_pass_radius=radius))
    model.train()
    data = model.data_preprocessor(random_batch(), True)
    x, samples = data['inputs'], data['data_samples']
    seen = []

    def forward(v):
        seen.append(v.detach())
        return model(v, mode='tensor')

    _, deltas = hat_backward(forward, lambda v: model(v, mode='tensor'),
                             lambda z, v: model.head._get_loss(z, samples)['loss'], x,
                             lambda loss, last: loss.backward(), model.hat, num_iters=3)
    assert torch.equal(seen[0], x)
    mask = radial_mask(16, 16, radius)
    for applied in seen[1:]:
        spec = centred_spectrum(applied - x)
        assert spec[..., ~mask].abs().max() > 1e-3  # high frequencies are perturbed
        assert spec[..., mask].abs().max() < 1e-4 * spec.abs().max() + 1e-6  # low are not
    # without the option the applied perturbation is delta itself (low frequencies too)
    plain = tiny_vit_classifier(hat=dict(adv_iters=3))
    assert plain.hat.high_pass_radius is None
    with pytest.raises(ValueError, match='hat.high_pass_radius'):
        tiny_vit_classifier(hat=dict(high_pass_radius=-1))


def test_real_amp_optim_wrapper_bf16_runs_the_hat_step(monkeypatch):
    """mmengine's AmpOptimWrapper (bf16 autocast) drives the HAT step; on CPU its CUDA check
    is bypassed and its GradScaler is inactive, so only the autocast path is exercised."""
    import warnings

    from mmengine.optim.optimizer import amp_optimizer_wrapper as amp_mod
    monkeypatch.setattr(amp_mod, 'is_cuda_available', lambda: True)
    dtypes = []
    results = []
    for use_amp in (False, True):
        model = tiny_vit_classifier(hat=dict(adv_iters=3), loss=LOSSES['hard'])
        model.train()
        model.set_hat_phase(True)
        model.head.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
        initial = [p.detach().clone() for p in model.parameters()]
        sgd = torch.optim.SGD(model.parameters(), lr=0.5)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            optim = amp_mod.AmpOptimWrapper(optimizer=sgd, dtype='bfloat16') if use_amp \
                else OptimWrapper(sgd)
        log_vars = model.train_step(random_batch(), optim)
        assert torch.isfinite(log_vars['loss'])
        results.append(torch.cat([(p.detach() - i).flatten() for p, i in
                                  zip(model.parameters(), initial)]))
    assert torch.bfloat16 in dtypes and torch.float32 in dtypes  # autocast was really on
    # bf16 rounds (and can flip the sign of tiny input gradients): same update direction
    cos = F.cosine_similarity(results[0], results[1], dim=0)
    assert cos > 0.98, cos
    assert 0.9 < results[1].norm() / results[0].norm() < 1.1


@pytest.mark.parametrize('precision, dtype, scaled', [('fp16', 'float16', True),
                                                      ('bf16', 'bfloat16', False)])
def test_amp_scales_the_loss_in_fp16_only(monkeypatch, precision, dtype, scaled):
    """``tools/train.py --amp``: fp16 with dynamic loss scaling; bf16 (float32's exponent
    range) without a scaler, so no inf check and sync before each step and no skipped steps
    where a growing scale overflows. A loss_scale the config sets is kept."""
    import warnings

    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.optim.optimizer import amp_optimizer_wrapper as amp_mod

    from tools import train
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)  # --amp needs a GPU
    monkeypatch.setattr(amp_mod, 'is_cuda_available', lambda: True)
    cfg = train.merge_args(Config.fromfile('configs/hat_vit_t.py'),
                           train.parse_args(['configs/hat_vit_t.py', '--amp', precision]))
    wrapper_cfg = cfg.optim_wrapper
    assert wrapper_cfg.type == 'AmpOptimWrapper' and wrapper_cfg.dtype == dtype
    model = tiny_vit_classifier(hat=dict(adv_iters=3), loss=LOSSES['hard'])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        wrapper = build_optim_wrapper(model, copy.deepcopy(wrapper_cfg))
    assert wrapper.cast_dtype == getattr(torch, dtype)
    assert wrapper.loss_scaler.is_enabled() is scaled
    # the config's own choice wins
    own = Config.fromfile('configs/hat_vit_t.py')
    own.optim_wrapper.loss_scale = 512.0
    own = train.merge_args(own, train.parse_args(['configs/hat_vit_t.py', '--amp', precision]))
    assert own.optim_wrapper.loss_scale == 512.0


def test_amp_refuses_another_optim_wrapper_type_naming_it():
    from hat_mm.utils.tool_args import use_amp
    with pytest.raises(ValueError, match='optim_wrapper.type=ApexOptimWrapper: drop --amp'):
        use_amp(dict(type='ApexOptimWrapper'), 'fp16')
    with pytest.raises(ValueError, match="--amp 'fp8'"):
        use_amp(dict(), 'fp8')
    assert use_amp(dict(type='AmpOptimWrapper', loss_scale=8.0), 'bf16') == dict(
        type='AmpOptimWrapper', dtype='bfloat16', loss_scale=8.0)


def _run_hat_backward(model, x, samples, K, with_kl=True):
    return hat_backward(lambda v: model(v, mode='tensor'), lambda v: model(v, mode='tensor'),
                        lambda z, v: model.head._get_loss(z, samples)['loss'], x,
                        lambda loss, last: loss.backward(), model.hat, num_iters=K,
                        with_kl=with_kl)


def test_perturbation_is_clipped_to_eps():
    """K = 4: three sign steps of alpha = eps / 2 would reach 1.5 eps; delta is clipped to
    [-eps, eps] after every step, and the gradients follow the clipped perturbations."""
    K = 4
    model = tiny_vit_classifier(hat=dict(adv_iters=K), loss=LOSSES['hard'])
    model.train()
    data = model.data_preprocessor(random_batch(), True)
    x, samples = data['inputs'], data['data_samples']
    ref_grads, ref_deltas = reference_hat(copy.deepcopy(model), x, _targets(samples, 'hard'),
                                          K, 'hard')
    model.zero_grad()
    _, deltas = _run_hat_backward(model, x, samples, K)
    assert (deltas[-1].abs() == EPS).float().mean() > 0.5  # the clip really acted
    assert deltas[-1].abs().max() == EPS
    for d, rd in zip(deltas, ref_deltas):
        torch.testing.assert_close(d, rd, rtol=0, atol=1e-7)
    for (name, p), g in zip(model.named_parameters(), ref_grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7, msg=name)


def test_logged_terms_are_the_losses_of_each_pass():
    """``loss`` is the sum of the K back-propagated losses L_k; ``*_clean`` the terms of the
    first pass (KL_0 = 0: same input and no dropout), ``*_adv`` the means over the others."""
    K = 3
    model = tiny_vit_classifier(hat=dict(adv_iters=K), loss=LOSSES['hard'])
    model.train()
    data = model.data_preprocessor(random_batch(), True)
    x, samples = data['inputs'], data['data_samples']
    target = _targets(samples, 'hard')
    log_vars, deltas = _run_hat_backward(model, x, samples, K)

    with torch.no_grad():
        pc = F.softmax(model(x, mode='tensor'), -1)
        ce, kl = [], []
        for v in [x] + [x + d for d in deltas]:
            z = model(v, mode='tensor')
            p = F.softmax(z, -1)
            ce.append(F.cross_entropy(z, target))
            kl.append(0.5 * ((pc * (pc.log() - p.log())).sum(-1)
                             + (p * (p.log() - pc.log())).sum(-1)).mean())
    assert kl[1] > 1e-6 and abs(ce[1] - ce[0]) > 1e-6  # the passes differ
    total = ce[0] + W_KL * kl[0] + sum((W_CE * c + W_KL * k) / (K - 1)
                                       for c, k in zip(ce[1:], kl[1:]))
    torch.testing.assert_close(log_vars['loss'], total)
    torch.testing.assert_close(log_vars['loss_ce_clean'], ce[0])
    torch.testing.assert_close(log_vars['loss_kl_clean'], kl[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(log_vars['loss_ce_adv'], (ce[1] + ce[2]) / 2)
    torch.testing.assert_close(log_vars['loss_kl_adv'], (kl[1] + kl[2]) / 2)


def test_hat_backward_refuses_bad_pass_counts():
    with pytest.raises(ValueError, match='num_iters must be >= 1'):
        hat_backward(None, None, None, torch.zeros(1), None, HATConfig(), num_iters=0)
    with pytest.raises(ValueError, match='need the KL term'):
        hat_backward(None, None, None, torch.zeros(1), None, HATConfig(), num_iters=2,
                     with_kl=False)


def test_zero_bound_weights_and_epochs_are_valid():
    h = HATConfig(adv_eps=0, adv_kl_weight=0, adv_ce_weight=0, adv_epochs=0)
    assert (h.adv_eps, h.adv_kl_weight, h.adv_ce_weight, h.adv_epochs) == (0, 0, 0, 0)


def test_symmetric_kl_with_clean_probabilities_that_underflow_to_zero():
    """A clean logit 200 below the others: its probability is 0 in float32. Official
    ``F.kl_div`` counts 0 * log 0 as 0, and so does ours: a finite value, and the gradient of
    a logit gap of 50 (probability ~1e-22, whose terms are negligible). (The official
    expression's own gradient is NaN there: d xlogy(p, p) / dp at p = 0.)"""
    def official(z_clean, z):
        return (F.kl_div(F.log_softmax(z, dim=1), F.softmax(z_clean, dim=1),
                         reduction='none').sum(dim=1)
                + F.kl_div(F.log_softmax(z_clean, dim=1), F.softmax(z, dim=1),
                           reduction='none').sum(dim=1)).mean() / 2

    noise = torch.tensor([[0.1, 0.2, -0.3], [0., 0.5, 0.2]])
    z_clean = torch.tensor([[0., -200., 1.], [2., 0., -300.]])
    z = (z_clean + noise).requires_grad_(True)
    p_clean = F.softmax(z_clean, dim=1)
    assert (p_clean == 0).sum() == 2
    ours = symmetric_kl(p_clean, z)
    assert torch.isfinite(ours)
    torch.testing.assert_close(ours, official(z_clean, z))
    z_clean_50 = torch.tensor([[0., -50., 1.], [2., 0., -50.]])
    z_50 = (z_clean_50 + noise).requires_grad_(True)
    torch.testing.assert_close(torch.autograd.grad(ours, z)[0],
                               torch.autograd.grad(official(z_clean_50, z_50), z_50)[0])


def test_configured_kl_loss_is_the_one_the_update_uses():
    """``model.kl_loss`` (here weighted by 3) replaces the default symmetric KL."""
    K = 2
    model = tiny_vit_classifier(hat=dict(adv_iters=K), loss=LOSSES['hard'], model_kwargs=dict(
        kl_loss=dict(type='SymmetricKLLoss', loss_weight=3.0)))
    model.train()
    model.set_hat_phase(True)
    ref = copy.deepcopy(model)
    data = ref.data_preprocessor(random_batch(), True)
    grads, _ = reference_hat(ref, data['inputs'], _targets(data['data_samples'], 'hard'), K,
                             'hard', w_kl=3 * W_KL)
    expected = [p.detach() - 0.5 * g for p, g in zip(ref.parameters(), grads)]
    model.train_step(random_batch(), OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.5)))
    for (name, p), e in zip(model.named_parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6, msg=name)


def test_gradient_accumulation_counts_one_iteration_per_hat_step():
    """``accumulative_counts=2``: the K passes of a step count as one iteration, each loss
    is divided by 2, and the parameters move once, after the second step."""
    K = 2
    model = tiny_vit_classifier(hat=dict(adv_iters=K), loss=LOSSES['hard'])
    model.train()
    model.set_hat_phase(True)
    ref = copy.deepcopy(model)
    total = [torch.zeros_like(p) for p in ref.parameters()]
    for seed in (1, 2):
        data = ref.data_preprocessor(random_batch(seed=seed), True)
        grads, _ = reference_hat(ref, data['inputs'], _targets(data['data_samples'], 'hard'),
                                 K, 'hard')
        total = [t + g for t, g in zip(total, grads)]
    before = [p.detach().clone() for p in model.parameters()]
    expected = [p.detach() - 0.5 * t / 2 for p, t in zip(ref.parameters(), total)]

    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.5), accumulative_counts=2)
    model.train_step(random_batch(seed=1), optim)
    assert optim._inner_count == 1
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p.detach(), b)  # no step yet
    model.train_step(random_batch(seed=2), optim)
    assert optim._inner_count == 2
    for (name, p), e in zip(model.named_parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6, msg=name)


def test_without_the_phase_hook_training_is_adversarial_and_warns_once():
    import warnings
    model = tiny_vit_classifier(hat=dict(adv_iters=3), loss=LOSSES['hard'])
    model.train()
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(torch.is_grad_enabled()))
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.warns(UserWarning, match='HATPhaseHook is not in custom_hooks'):
        log_vars = model.train_step(random_batch(), optim)
    assert calls == [False, True, True, True] and 'loss_kl_adv' in log_vars
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter('always')
        model.train_step(random_batch(), optim)
    assert not [w for w in seen if 'HATPhaseHook' in str(w.message)]  # once

    # adv_epochs=0: no adversarial phase at all, and nothing to warn about
    calls.clear()
    none = tiny_vit_classifier(hat=dict(adv_iters=3, adv_epochs=0), loss=LOSSES['hard'])
    none.train()
    none.register_forward_hook(lambda m, i, o: calls.append(torch.is_grad_enabled()))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter('always')
        log_vars = none.train_step(random_batch(), OptimWrapper(
            torch.optim.SGD(none.parameters(), lr=0.1)))
    assert not [w for w in seen if 'HATPhaseHook' in str(w.message)]
    assert calls == [False, True] and 'loss_ce_adv' not in log_vars


def test_extra_loss_terms_are_logged_from_the_first_pass():
    """Keys besides ``loss`` of the classification loss are logged, with the value of the
    unperturbed pass (k = 0)."""
    model = tiny_vit_classifier(hat=dict(adv_iters=3), loss=LOSSES['hard'])
    model.train()
    model.set_hat_phase(True)
    seen = []

    def loss_with_probe(output, data_samples, inputs, forward_context=None):
        loss = model.head._get_loss(output, data_samples)['loss']
        seen.append(loss.detach())
        return dict(loss=loss, loss_probe=loss.detach())

    model.hat_classification_loss = loss_with_probe
    log_vars = model.train_step(random_batch(), OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1)))
    assert len(seen) == 3 and not torch.equal(seen[0], seen[-1])
    assert torch.equal(log_vars['loss_probe'], seen[0])
    assert torch.equal(log_vars['loss_ce_clean'], seen[0])


@pytest.mark.parametrize('classifier', ['image', 'timm'])
def test_classification_loss_is_computed_in_float32_from_low_precision_logits(classifier):
    """Under bf16/fp16 autocast the head's logits are low precision; ``CE_k`` is computed
    from them cast to float32 (HATImageClassifier, HATTimmClassifier)."""
    if classifier == 'image':
        model = tiny_vit_classifier(loss=LOSSES['hard'])
    else:
        from mmpretrain.registry import MODELS
        model = MODELS.build(dict(
            type='HATTimmClassifier', model_name='vit_tiny_patch16_224', pretrained=False,
            num_classes=NUM_CLASSES, img_size=16, patch_size=4, depth=1,
            loss=dict(type='CrossEntropyLoss'),
            data_preprocessor=dict(type='mmpretrain.ClsDataPreprocessor',
                                   num_classes=NUM_CLASSES, mean=[127.5] * 3,
                                   std=[60.0] * 3)))
    samples = model.data_preprocessor(random_batch(), True)['data_samples']
    logits = torch.randn(6, NUM_CLASSES, generator=torch.Generator().manual_seed(0)) * 4
    low = logits.bfloat16()
    loss = model.hat_classification_loss(low, samples, None)['loss']
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(low.float(), _targets(samples, 'hard')))
