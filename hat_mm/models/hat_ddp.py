"""Distributed wrapper that runs the HAT step.

mmengine's ``MMDistributedDataParallel.train_step`` does not call the module's ``train_step``:
it runs the plain forward/backward itself, so a HAT model wrapped by it would silently train
without HAT. This wrapper hands the step to the module, which forwards through the wrapper
(so gradients are all-reduced) and suspends the all-reduce for the first K-1 backward passes:
one gradient all-reduce per optimizer step.
"""
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS

from .hat_classifier import HATClassifierMixin


@MODEL_WRAPPERS.register_module()
class HATDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that runs :class:`HATClassifierMixin` models' HAT step.

    CPU modules (gloo backend) are wrapped without ``device_ids``.
    """

    def __init__(self, module, **kwargs):
        if all(p.device.type == 'cpu' for p in module.parameters()):
            kwargs['device_ids'] = None
            kwargs.pop('output_device', None)
        kwargs.setdefault('broadcast_buffers', False)
        super().__init__(module=module, **kwargs)

    def train_step(self, data, optim_wrapper):
        if isinstance(self.module, HATClassifierMixin):
            return self.module.hat_train_step(data, optim_wrapper, runner_model=self)
        return super().train_step(data, optim_wrapper)
