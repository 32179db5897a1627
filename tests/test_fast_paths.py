"""Fast paths compute the same HAT update as the plain path (CPU, fp32)."""
import copy

import torch
from mmengine.optim import OptimWrapper
from mmpretrain.registry import MODELS

import hat_mm  # noqa: F401
from hat_mm.models.fused_window_attention import SDPAWindowMSA

from .helpers import NUM_CLASSES, random_batch


def _tiny_swin(fused):
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='HATImageClassifier', fused_window_attention=fused, hat=dict(adv_iters=3),
        backbone=dict(type='SwinTransformer', img_size=16, patch_size=2, window_size=4,
                      arch=dict(embed_dims=16, depths=[2, 2], num_heads=[2, 4]),
                      drop_path_rate=0.0, out_indices=(1, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=32,
                  loss=dict(type='CrossEntropyLoss')),
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=NUM_CLASSES,
                               mean=[127.5] * 3, std=[60.0] * 3)))
    for p in model.parameters():  # non-trivial biases and attention tables
        torch.nn.init.normal_(p, std=0.2)
    return model


def test_fused_window_attention_gives_the_same_hat_update():
    plain, fused = _tiny_swin(False), _tiny_swin(True)
    fused.load_state_dict(plain.state_dict())  # same keys: checkpoints interchangeable
    n_fused = sum(isinstance(m, SDPAWindowMSA) for m in fused.modules())
    assert n_fused == 4 and not any(isinstance(m, SDPAWindowMSA) for m in plain.modules())
    x = plain.data_preprocessor(random_batch(), True)['inputs']
    plain.eval(), fused.eval()
    torch.testing.assert_close(fused(x, mode='tensor'), plain(x, mode='tensor'),
                               rtol=1e-5, atol=1e-6)
    results = []
    for model in (plain, fused):
        model.train()
        model.set_hat_phase(True)
        before = copy.deepcopy(model.state_dict())
        log_vars = model.train_step(random_batch(), OptimWrapper(
            torch.optim.SGD(model.parameters(), lr=0.5)))
        assert 'loss_kl_adv' in log_vars
        results.append({k: v - before[k] for k, v in model.state_dict().items()})
    assert max(v.abs().max() for v in results[0].values()) > 1e-3  # the step did something
    for k, v in results[0].items():
        torch.testing.assert_close(results[1][k], v, rtol=1e-4, atol=1e-6, msg=k)
