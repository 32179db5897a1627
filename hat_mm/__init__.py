"""hat-mm: HAT (High-frequency Adversarial Training, ECCV 2022) for OpenMMLab.

Importing the package registers its parts into the mmengine/mmpretrain registries; configs do
it with ``custom_imports = dict(imports=['hat_mm'])``. An installed transformers that mmpretrain
1.2.0's multimodal models cannot import is kept out of ``mmpretrain.models``
(``utils.transformers_guard``). With an mmcv built with CPU ops only it
also routes mmcv's RoIAlign and nms on CUDA tensors to torchvision (``mmcv_cuda_fallback``).
"""
__version__ = '0.1.0'

from .hat_update import HATConfig, hat_backward, symmetric_kl  # noqa: E402
from .utils import allow_mmengine_checkpoint_classes, skip_broken_mmpretrain_multimodal  # noqa
skip_broken_mmpretrain_multimodal()  # before anything imports mmpretrain.models
from . import mmcv_cuda_fallback  # noqa: E402
from . import datasets, engine, evaluation, models  # noqa: E402,F401  (registration)

allow_mmengine_checkpoint_classes()
mmcv_cuda_fallback.install()

__all__ = ['HATConfig', 'hat_backward', 'symmetric_kl', '__version__']
