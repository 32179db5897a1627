"""Fail early when pretrained weights do not fit the model they are loaded into.

mmengine's ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')`` loads
with ``strict=False`` and only logs what did not match, so a wrong checkpoint (another
architecture, a classification head instead of a backbone, a typo in ``prefix``) trains on
silently from random weights. This hook compares, before training, every module whose
``init_cfg`` is ``Pretrained`` with its checkpoint and stops with the names of the missing,
unexpected and mis-shaped keys.
"""
from typing import Sequence

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..utils.checkpoint import (CheckpointError, compare_state_dicts, describe_mismatch,
                                load_pretrained_state)


def _pretrained_cfgs(module):
    cfgs = module.init_cfg if isinstance(module.init_cfg, list) else [module.init_cfg]
    return [c for c in cfgs if isinstance(c, dict) and c.get('type') == 'Pretrained']


def compare_with_checkpoint(module: torch.nn.Module, checkpoint: str, prefix: str = None,
                            allow_missing: Sequence[str] = ()) -> dict:
    """Missing / unexpected / mis-shaped keys of ``module`` against ``checkpoint``.

    ``prefix`` selects and strips the checkpoint keys (``'backbone.'``); keys of the module
    starting with one of ``allow_missing`` may be absent from the checkpoint.
    """
    return compare_state_dicts(module.state_dict(), load_pretrained_state(checkpoint, prefix),
                               allow_missing)


@HOOKS.register_module()
class CheckPretrainedKeysHook(Hook):
    """Before training, check ``Pretrained`` init_cfgs against their checkpoints.

    Args:
        allow_missing (list[str]): key prefixes (relative to the module) that may be absent
            from the checkpoint, e.g. the output norms that dense-prediction backbones add
            (``['norm0.', 'norm1.', 'norm2.']`` for Swin).
        reinit (list[str]): names of submodules (relative to the module) whose weights are
            built fresh instead of loaded: their ``reset_parameters()`` is called after the
            check. The official Swin detection and segmentation code adds a new output norm
            per stage and does not load the classifier's final ``norm`` into ``norm3``;
            ``['norm3']`` does the same with mmpretrain's Swin, whose pretraining checkpoint
            stores that final norm as ``norm3``.
    """

    priority = 'VERY_HIGH'

    def __init__(self, allow_missing: Sequence[str] = (), reinit: Sequence[str] = ()):
        self.allow_missing = tuple(allow_missing)
        self.reinit = tuple(reinit)

    def before_train(self, runner) -> None:
        if runner._resume or runner._load_from:
            return  # the weights come from the resumed / loaded checkpoint instead
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        for name, module in model.named_modules():
            if not hasattr(module, 'init_cfg') or not module.init_cfg:
                continue
            for cfg in _pretrained_cfgs(module):
                where = f'model.{name}' if name else 'model'
                result = compare_with_checkpoint(module, cfg['checkpoint'], cfg.get('prefix'))
                new = [k for k in result['missing'] if k.startswith(self.allow_missing)]
                result['missing'] = [k for k in result['missing'] if k not in new]
                problems = describe_mismatch(result)
                if problems:
                    raise CheckpointError(
                        f"{where}.init_cfg checkpoint {cfg['checkpoint']} (prefix="
                        f"{cfg.get('prefix')!r}) does not fit {type(module).__name__}: "
                        f'{problems}. Use a checkpoint of the same '
                        'architecture (convert official releases with tools/model_converters/'
                        'timm_to_mmpretrain.py) or fix the prefix.')
                layers = sorted({a.rstrip('.') for a in self.allow_missing for k in new
                                 if k.startswith(a)})
                runner.logger.info(
                    f"{where}: every weight matches the pretrained checkpoint "
                    f"{cfg['checkpoint']} (prefix={cfg.get('prefix')!r})"
                    + (f"; the {len(new)} weights of the layers it does not have "
                       f"({', '.join(layers)}) keep their initialisation, as expected "
                       "(mmengine's warning above about missing keys names them)"
                       if new else ''))
                self._reinit(module, where, runner.logger)

    def _reinit(self, module, where: str, logger) -> None:
        for name in self.reinit:
            sub = module.get_submodule(name)
            if not hasattr(sub, 'reset_parameters'):
                raise TypeError(f'{where}.{name} ({type(sub).__name__}) has no '
                                'reset_parameters(); remove it from reinit.')
            sub.reset_parameters()
            logger.info(f'{where}.{name}: built fresh, not loaded from the checkpoint')
