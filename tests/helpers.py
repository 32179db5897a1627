"""Small models and batches shared by the tests."""
import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

NUM_CLASSES = 5


def tiny_vit_classifier(hat=None, loss=None, hat_type='HATImageClassifier', **head_kwargs):
    """A 2-layer ViT on 16x16 inputs, drop-path and dropout 0 (deterministic forward)."""
    import hat_mm  # noqa: F401
    cfg = dict(
        type=hat_type,
        backbone=dict(type='VisionTransformer',
                      arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                feedforward_channels=64),
                      img_size=16, patch_size=4, drop_rate=0.0, drop_path_rate=0.0),
        neck=None,
        head=dict(type='VisionTransformerClsHead', num_classes=NUM_CLASSES, in_channels=32,
                  loss=loss or dict(type='CrossEntropyLoss'), **head_kwargs),
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=NUM_CLASSES,
                               mean=[127.5] * 3, std=[60.0] * 3),
    )
    if hat_type is not None and hat_type.startswith('HAT'):
        cfg['hat'] = hat or {}
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
