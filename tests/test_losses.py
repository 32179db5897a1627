"""The registered losses (hat_mm/models/losses), built from config, against a few lines of
plain PyTorch each; and the runner's rule that maps a classifier type to its HAT class."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmpretrain.registry import MODELS

import hat_mm  # noqa: F401  (registers the losses)
from hat_mm.engine import apply_hat


def _logits(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2


def test_symmetric_kl_loss_from_config():
    loss = MODELS.build(dict(type='SymmetricKLLoss', loss_weight=2.0))
    z = _logits(4, 7).requires_grad_(True)
    p_c = F.softmax(_logits(4, 7, seed=1), -1)
    p = F.softmax(z, -1)
    kl_cp = (p_c * (p_c.log() - p.log())).sum(-1)
    kl_pc = (p * (p.log() - p_c.log())).sum(-1)
    expected = 2.0 * 0.5 * (kl_cp + kl_pc).mean()
    got = loss(z, p_c)
    torch.testing.assert_close(got, expected)
    got.backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert loss(z, F.softmax(z, -1).detach()).abs() < 1e-6  # zero at equality


@pytest.mark.parametrize('ground_truth', [False, True])
@pytest.mark.parametrize('box', [(0, 0, 0, 0), (1, 0, 3, 2)])
def test_token_label_loss_from_config(ground_truth, box):
    B, N, C = 4, 16, 6
    loss = MODELS.build(dict(type='TokenLabelLoss', dense_weight=0.5, cls_weight=1.0,
                             ground_truth=ground_truth))
    cls, tok = _logits(B, C), _logits(B, N, C, seed=1)
    t_cls = F.softmax(_logits(B, C, seed=2), -1)
    t_tok = F.softmax(_logits(B, N, C, seed=3), -1)
    gt = F.one_hot(torch.tensor([0, 3, 5, 3]), C).float() * 0.9 + 0.1 / C
    out = loss(cls, tok, t_cls, t_tok, gt, mix_token_box=box)

    target = t_cls
    if ground_truth:  # tlt TokenLabelGTCrossEntropy
        same = gt.argmax(-1) == t_cls.argmax(-1)
        r = torch.where(same, torch.tensor(0.5), torch.tensor(0.9))[:, None]
        target = t_cls * r + gt * (1 - r)
    lam = 1 - (box[2] - box[0]) * (box[3] - box[1]) / N
    target = lam * target + (1 - lam) * target.flip(0)
    ce_cls = -(target * F.log_softmax(cls, -1)).sum(-1).mean()
    ce_tok = -(t_tok * F.log_softmax(tok, -1)).sum(-1).mean()
    torch.testing.assert_close(out['loss'], ce_cls + 0.5 * ce_tok)
    torch.testing.assert_close(out['loss_tl_cls'], ce_cls)
    torch.testing.assert_close(out['loss_tl_aux'], ce_tok)
    # without dense targets every token learns the class-token target
    flat = loss(cls, tok, t_cls, None, gt)
    ce_tok_cls = -(t_cls[:, None] * F.log_softmax(tok, -1)).sum(-1).mean()
    torch.testing.assert_close(flat['loss_tl_aux'], ce_tok_cls)
    with pytest.raises(ValueError, match='label_size'):
        loss(cls, tok, t_cls, t_tok[:, :4], gt)


@pytest.mark.parametrize('kind', ['hard', 'soft', 'none'])
def test_distillation_loss_from_config(kind):
    tau, alpha = 2.0, 0.3
    loss = MODELS.build(dict(type='DistillationLoss', distillation_type=kind, alpha=alpha,
                             tau=tau))
    base = torch.tensor(1.7)
    dist, teacher = _logits(5, 8), _logits(5, 8, seed=1)
    out = loss(base, dist, None if kind == 'none' else teacher)
    if kind == 'none':
        assert set(out) == {'loss'} and out['loss'] is base
        return
    if kind == 'hard':  # DeiT losses.py: CE against the teacher's arg-max
        kd = -F.log_softmax(dist, -1).gather(1, teacher.argmax(1, keepdim=True)).mean()
    else:  # sum over batch and classes of q * (log q - log p) at temperature tau
        q, logp = F.softmax(teacher / tau, -1), F.log_softmax(dist / tau, -1)
        kd = (q * (q.log() - logp)).sum() * tau * tau / dist.numel()
    torch.testing.assert_close(out['loss'], (1 - alpha) * base + alpha * kd)
    torch.testing.assert_close(out['loss_distill'], kd)
    assert torch.equal(out['loss_cls_base'], base)


def test_distillation_loss_refuses_bad_values():
    with pytest.raises(ValueError, match="'hard', 'soft' or 'none'"):
        MODELS.build(dict(type='DistillationLoss', distillation_type='kl'))
    for bad in (dict(alpha=1.5), dict(alpha=-0.1), dict(tau=0.0), dict(tau=-1.0)):
        with pytest.raises(ValueError, match='0 <= alpha <= 1 and tau > 0'):
            MODELS.build(dict(type='DistillationLoss', **bad))
    for alpha in (0.0, 1.0):  # the ends of the range are valid
        assert MODELS.build(dict(type='DistillationLoss', alpha=alpha)).alpha == alpha


def test_loss_defaults_are_the_papers():
    """The classifiers build these losses from bare ``dict(type=...)`` defaults: DeiT's hard
    distillation (alpha 0.5), VOLO's token labeling (class 1.0, tokens 0.5), KL weight 1."""
    base, dist, teacher = torch.tensor(1.3), _logits(5, 8), _logits(5, 8, seed=1)
    kd = F.cross_entropy(dist, teacher.argmax(1))
    out = MODELS.build(dict(type='DistillationLoss'))(base, dist, teacher)
    torch.testing.assert_close(out['loss'], 0.5 * base + 0.5 * kd)
    q, logp = F.softmax(teacher, -1), F.log_softmax(dist, -1)  # soft: tau 1
    kd_soft = (q * (q.log() - logp)).sum() / dist.numel()
    soft = MODELS.build(dict(type='DistillationLoss', distillation_type='soft'))
    out = soft(base, dist, teacher)
    torch.testing.assert_close(out['loss_distill'], kd_soft)

    cls, tok = _logits(2, 6), _logits(2, 4, 6, seed=1)
    t_cls, t_tok = F.softmax(_logits(2, 6, seed=2), -1), F.softmax(_logits(2, 4, 6, seed=3), -1)
    out = MODELS.build(dict(type='TokenLabelLoss'))(cls, tok, t_cls, t_tok)
    ce_cls = -(t_cls * F.log_softmax(cls, -1)).sum(-1).mean()
    ce_tok = -(t_tok * F.log_softmax(tok, -1)).sum(-1).mean()
    torch.testing.assert_close(out['loss'], 1.0 * ce_cls + 0.5 * ce_tok)

    z, p_c = _logits(4, 7), F.softmax(_logits(4, 7, seed=1), -1)
    torch.testing.assert_close(MODELS.build(dict(type='SymmetricKLLoss'))(z, p_c),
                               MODELS.build(dict(type='SymmetricKLLoss', loss_weight=2.0))(
                                   z, p_c) / 2)


def test_token_label_ground_truth_mode_needs_the_ground_truth():
    loss = MODELS.build(dict(type='TokenLabelLoss', ground_truth=True))
    cls, tok = _logits(2, 6), _logits(2, 4, 6, seed=1)
    with pytest.raises(ValueError, match='ground_truth=True needs the ground-truth target'):
        loss(cls, tok, F.softmax(cls, -1))


def test_hat_type_is_the_rule_hat_plus_the_classifier_type():
    """A new classifier family needs only its HAT subclass registered: no table to edit."""
    from mmpretrain.models import ImageClassifier

    from hat_mm.models import HATClassifierMixin

    @MODELS.register_module(force=True)
    class ToyFamilyClassifier(ImageClassifier):
        pass

    cfg = Config(dict(model=dict(type='ToyFamilyClassifier'), hat=dict(adv_iters=2)))
    with pytest.raises(TypeError, match="no 'HATToyFamilyClassifier' is registered"):
        apply_hat(cfg)

    @MODELS.register_module(force=True)
    class HATToyFamilyClassifier(HATClassifierMixin, ToyFamilyClassifier):
        pass

    assert apply_hat(cfg).model.type == 'HATToyFamilyClassifier'
    for plain, hat in (('ImageClassifier', 'HATImageClassifier'),
                       ('mmpretrain.TimmClassifier', 'HATTimmClassifier'),
                       ('VOLOClassifier', 'HATVOLOClassifier'),
                       ('DistilledImageClassifier', 'HATDistilledImageClassifier'),
                       ('HATImageClassifier', 'HATImageClassifier')):
        assert apply_hat(Config(dict(model=dict(type=plain)))).model.type == hat
