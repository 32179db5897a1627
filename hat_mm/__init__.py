"""hat-mm: HAT (High-frequency Adversarial Training, ECCV 2022) for OpenMMLab.

Importing the package registers its parts into the mmengine/mmpretrain registries; configs do
it with ``custom_imports = dict(imports=['hat_mm'])``.
"""
__version__ = '0.1.0'

from .hat_update import HATConfig, hat_backward, symmetric_kl  # noqa: E402
from .utils import allow_mmengine_checkpoint_classes  # noqa: E402
from . import datasets, engine, evaluation, models  # noqa: E402,F401  (registration)

allow_mmengine_checkpoint_classes()

__all__ = ['HATConfig', 'hat_backward', 'symmetric_kl', '__version__']
