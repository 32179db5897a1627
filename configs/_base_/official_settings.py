# What the official scripts (jiawangbai/HAT train.py and train_kd.py on timm, validate.py)
# run where mmpretrain's recipes set something else, shared by all paper configs. The names
# are their own (official_*, imagenet_*) because the mmpretrain recipes beside this file
# already define train_pipeline, data_preprocessor, env_cfg, randomness, default_hooks, and
# mmengine refuses a key that two bases define; the paper configs use them through
# {{_base_.*}}.
#
# Random erasing as timm's and tlt's prefetcher runs it: on the normalised batch after
# mixup/cutmix, --reprob 0.25, --remode pixel (N(0, 1) per pixel), --recount 1, one block of
# 2% to 1/3 of the image (hat_mm/models/erasing_preprocessor.py); so no pipeline erases.
official_erasing = dict(probability=0.25, mode='pixel', max_count=1)

# Mixup/cutmix as timm's batch-mode Mixup of the official scripts (--mixup 0.8 --cutmix 1.0
# --mixup-prob 1.0 --mixup-switch-prob 0.5 --mixup-mode batch): one lam and one choice per
# batch, each image mixed with the reversed batch, on the batch before the erasing
# (hat_mm/models/erasing_preprocessor.py). So the paper configs set model.train_cfg=None
# (no mmpretrain batch augments, which pair each image with a random permutation).
official_data_preprocessor = dict(type='EraseAfterMixDataPreprocessor', mixup_alpha=0.8,
                                  cutmix_alpha=1.0, mix_prob=1.0, switch_prob=0.5,
                                  erasing=official_erasing)

# The training interpolation of the official scripts, --train-interpolation random (their
# default): bilinear or bicubic drawn for each image in the crop and for each application of
# RandAugment's geometric operations (hat_mm/datasets/transforms/random_interpolation.py).
train_interpolation = 'random'

# Image decoding as the official loaders (timm's ImageDataset, tlt's token-label dataset):
# PIL.Image.open(path).convert('RGB'), which ignores a JPEG's EXIF orientation tag. mmcv's
# default (OpenCV, IMREAD_COLOR) turns such an image upright, so its crop, its pixels and its
# token-label map would not be the official ones; OpenCV also converts CMYK JPEGs (a few in
# ImageNet) one level off PIL on most pixels. Pillow without the orientation is PIL's
# decode, pixel for pixel, in BGR order (tests/test_configs.py).
official_image_loading = dict(type='LoadImageFromFile', imdecode_backend='pillow',
                              color_type='color_ignore_orientation')

# mmpretrain's Swin/DeiT recipe pipeline (timm's rand-m9-mstd0.5-inc1, ImageNet-mean fill)
# without its RandomErasing, with the official random interpolation.
imagenet_train_pipeline = [
    dict(official_image_loading),
    dict(type='RandomInterpolationResizedCrop', scale=224, backend='pillow',
         interpolation=train_interpolation),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomInterpolationRandAugment', policies='timm_increasing', num_policies=2,
         total_level=10, magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[104, 116, 124], interpolation=train_interpolation)),
    dict(type='PackInputs'),
]

# The official loader (timm's create_loader, fast_collate) hands each training batch over as
# one uint8 tensor. mmengine's default collate (pseudo_collate) hands over a list of images:
# the training process then receives and unpickles them one by one, and the data
# preprocessor copies them to the GPU and normalises them one by one. The same pixels either
# way (tests/test_fast_paths.py); the loading process's own time per batch of 128 Swin-T
# training images when the workers are ahead, 2 idle CPU cores (train_throughput.py
# --loader-only, twice each): 24-31 ms with pseudo_collate, 4-8 ms with default_collate.
# Training batches only: every training crop has the same size, evaluation images need not.
official_collate = dict(type='default_collate')

# Evaluation as the official validate.py for the 224 models whose timm crop_pct is 0.9 (Swin,
# ViT, DeiT-distilled): resize the short side to floor(224 / 0.9) = 248 (bicubic), centre crop
# 224 (mmpretrain's recipes resize to 256). VOLO's crop_pct differs: its configs set their own.
imagenet_test_pipeline = [
    dict(official_image_loading),
    dict(type='ResizeEdge', scale=248, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

# The ViT / DeiT heads as the official code's timm 0.4 VisionTransformer initialises them
# (self.apply(_init_vit_weights) without module names: every Linear, the heads included,
# N(0, 0.02) truncated to [-2, 2], zero bias); mmpretrain's ViT heads start at zero. Their
# backbones: TimmInitVisionTransformer / TimmInitDistilledVisionTransformer
# (hat_mm/models/timm_vit_init.py).
timm_vit_head_init = dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.)

# train.py and train_kd.py set torch.backends.cudnn.benchmark = True (mmpretrain's runtime:
# False): it picks the fastest convolution algorithms for the fixed input size (the patch
# embeddings, VOLO's stem, the RegNetY teacher).
official_env_cfg = dict(cudnn_benchmark=True)

# train.py and train_kd.py seed torch and numpy with --seed (default 42) + rank, so every GPU
# draws its own drop-path masks, mixup/cutmix and MixToken boxes (mmengine's default: one
# seed shared by all ranks, which repeats those draws on every GPU). The data sampler's
# shuffle stays common to all ranks (mmengine broadcasts its seed).
official_randomness = dict(seed=42, diff_rank_seed=True)

# timm's CheckpointSaver keeps the best top-1 checkpoint (model_best.pth.tar) and the 3 most
# recent ones (--checkpoint-hist 3): default_hooks = dict(checkpoint=official_checkpoint).
official_checkpoint = dict(save_best='accuracy/top1', rule='greater', max_keep_ckpts=3)
