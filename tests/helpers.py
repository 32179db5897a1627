"""Small models and batches shared by the tests."""
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

NUM_CLASSES = 5
EPS, ALPHA, W_KL, W_CE = 2 / 255, 1 / 255, 0.01, 3.0  # the official HAT defaults


def reference_hat_loop(forward, ce, x, params, K, logits=lambda out: out, eps=EPS,
                       alpha=ALPHA, w_kl=W_KL, w_ce=W_CE):
    """docs/hat_update.md written out with plain torch, independent of hat_mm.

    ``forward(v)`` is the model's train-mode output on ``v``, ``ce(output, v)`` the
    classification loss ``CE_k`` of it, ``logits(output)`` the logits the KL compares.
    Returns (gradients of ``params`` summed over the K passes, the deltas used).
    """
    import torch.nn.functional as F
    with torch.no_grad():
        pc = F.softmax(logits(forward(x)), -1)
    grads = [torch.zeros_like(p) for p in params]
    delta = torch.zeros_like(x)
    deltas = []
    for k in range(K):
        d = delta.clone().requires_grad_(True)
        out = forward(x + d)
        p = F.softmax(logits(out), -1)
        kl = 0.5 * ((pc * (pc.log() - p.log())).sum(-1) + (p * (p.log() - pc.log())).sum(-1))
        kl = kl.mean()
        c = ce(out, x + d)
        loss = c + w_kl * kl if k == 0 else (w_ce * c + w_kl * kl) / (K - 1)
        got = torch.autograd.grad(loss, params + [d])
        grads = [g + o for g, o in zip(grads, got[:-1])]
        delta = torch.clamp(delta + alpha * got[-1].sign(), -eps, eps)
        if k < K - 1:
            deltas.append(delta)
    return grads, deltas


def tiny_vit_classifier(hat=None, loss=None, hat_type='HATImageClassifier', compile=None,
                        drop_rate=0.0, drop_path_rate=0.0, model_kwargs=None, **head_kwargs):
    """A 2-layer ViT on 16x16 inputs, drop-path and dropout 0 unless given (deterministic
    forward); ``compile``: the HAT classifier's ``compile`` option; ``model_kwargs``: more
    arguments of the classifier (``kl_loss``, ...)."""
    import hat_mm  # noqa: F401
    cfg = dict(
        type=hat_type,
        backbone=dict(type='VisionTransformer',
                      arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                feedforward_channels=64),
                      img_size=16, patch_size=4, drop_rate=drop_rate,
                      drop_path_rate=drop_path_rate),
        neck=None,
        head=dict(type='VisionTransformerClsHead', num_classes=NUM_CLASSES, in_channels=32,
                  loss=loss or dict(type='CrossEntropyLoss'), **head_kwargs),
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=NUM_CLASSES,
                               mean=[127.5] * 3, std=[60.0] * 3),
    )
    if hat_type is not None and hat_type.startswith('HAT'):
        cfg['hat'] = hat or {}
    if compile is not None:
        cfg['compile'] = compile
    cfg.update(model_kwargs or {})
    torch.manual_seed(0)
    model = MODELS.build(cfg)  # PyTorch default init: a non-zero head, unlike init_weights
    return model


def random_batch(n=6, soft=False, seed=1):
    """A raw batch (uint8 images, data samples) as a dataloader yields it."""
    g = torch.Generator().manual_seed(seed)
    inputs = [torch.randint(0, 256, (3, 16, 16), generator=g, dtype=torch.uint8)
              for _ in range(n)]
    samples = []
    for i in range(n):
        s = DataSample().set_gt_label(int(torch.randint(0, NUM_CLASSES, (1, ), generator=g)))
        if soft:
            score = torch.rand(NUM_CLASSES, generator=g)
            s.set_gt_score(score / score.sum())
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def paper_config(path, model_type):
    """A paper config as HATRunner builds it, after checking what every paper config shares:
    HATRunner, the HAT classifier ``model_type`` and the official HAT values."""
    from mmengine.config import Config

    from hat_mm.engine import apply_hat
    raw = Config.fromfile(path)
    assert raw.runner_type == 'HATRunner'
    cfg = apply_hat(raw)
    assert cfg.model.type == model_type
    hat = cfg.model.hat
    assert (hat.adv_iters, hat.adv_epochs, hat.adv_kl_weight, hat.adv_ce_weight) == \
        (3, 200, 0.01, 3.0)
    assert abs(hat.adv_eps - 2 / 255) < 1e-8 and abs(hat.adv_lr - 1 / 255) < 1e-12
    # compiled on GPUs, where it was measured to pay (Swin, ViT), eager on CPU; VOLO and
    # DeiT-B distilled have not been measured compiled on a GPU
    compiled = dict(devices=['cuda']) if model_type == 'HATImageClassifier' else None
    assert cfg.model.get('compile') == compiled, path
    return cfg
