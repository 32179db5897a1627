"""ImageNet-C (Hendrycks & Dietterich, ICLR 2019): top-1 per corruption and severity, the
corruption errors normalised by AlexNet's, and their mean, the mCE.

``ALEXNET_ERR``: AlexNet's top-1 error on ImageNet-C averaged over the 5 severities, per
corruption: the normalisation table of Hendrycks & Dietterich (as published in their
evaluation code, hendrycks/robustness).
"""
from collections import defaultdict
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmpretrain.registry import METRICS

from ...datasets.class_folders import IMAGENET_C_CORRUPTIONS, IMAGENET_C_SEVERITIES

ALEXNET_ERR = dict(zip(IMAGENET_C_CORRUPTIONS, (
    0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360, 0.866816,
    0.826572, 0.819324, 0.564592, 0.853204, 0.646056, 0.717840, 0.606500)))


def corruption_errors(errors: Dict[Tuple[str, int], float],
                      alexnet_err: Optional[Dict[str, float]] = None) -> dict:
    """Corruption errors (CE) and their mean (mCE), Hendrycks & Dietterich 2019.

    ``errors[(corruption, severity)]`` is the model's top-1 error in [0, 1] on that
    corruption and severity. For each corruption ``c`` with an AlexNet entry,
    ``CE_c = sum_s E_{c,s} / sum_s E^AlexNet_{c,s}``; AlexNet's table gives its error
    averaged over the 5 severities, so ``sum_s E^AlexNet_{c,s} = n_s * ALEXNET_ERR[c]`` and
    ``CE_c = mean_s E_{c,s} / ALEXNET_ERR[c]``: exact with all 5 severities, and the same
    normalisation by the average when only some severities are evaluated. ``mCE`` is the
    mean of ``CE_c`` over the corruptions found. Returns fractions (multiply by 100 for the
    percentages papers quote): ``{'ce': {c: CE_c}, 'mce': float or None, 'skipped': [...]}``
    where ``skipped`` lists corruptions without an AlexNet entry (not in the mCE).
    """
    alexnet_err = ALEXNET_ERR if alexnet_err is None else alexnet_err
    by_c = defaultdict(list)
    for (c, _s), e in errors.items():
        by_c[c].append(float(e))
    ce, skipped = {}, []
    for c, errs in by_c.items():
        if c in alexnet_err:
            ce[c] = float(np.mean(errs)) / float(alexnet_err[c])
        else:
            skipped.append(c)
    mce = float(np.mean(list(ce.values()))) if ce else None
    return dict(ce=ce, mce=mce, skipped=sorted(skipped))


@METRICS.register_module()
class ImageNetCMetric(BaseMetric):
    """Top-1 per corruption and severity on ImageNet-C, corruption errors normalised by
    AlexNet's (``CE_<corruption>``, percent) and their mean, ``mCE`` (percent; lower is
    better); see :func:`corruption_errors`. Keys (prefix ``imagenet-c/``): ``mCE``,
    ``top1`` (mean over corruptions and severities), ``top1_<corruption>`` (mean over
    severities), ``CE_<corruption>``, ``top1_severity<s>`` (mean over corruptions). The full
    corruption x severity table is logged.

    The corruption and severity of a sample come from its metainfo, set by the
    :class:`~hat_mm.datasets.ImageNetC` dataset.
    """
    default_prefix = 'imagenet-c'

    def __init__(self, alexnet_err: Optional[Dict[str, float]] = None,
                 collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.alexnet_err = dict(ALEXNET_ERR if alexnet_err is None else alexnet_err)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for ds in data_samples:
            if 'corruption' not in ds or 'severity' not in ds:
                raise KeyError('ImageNetCMetric needs the corruption and severity of each '
                               "sample: evaluate with the dataset type='ImageNetC'.")
            pred = int(ds['pred_score'].argmax())
            gt = int(torch.as_tensor(ds['gt_label']).reshape(-1)[0])
            self.results.append((str(ds['corruption']), int(ds['severity']), pred == gt))

    def compute_metrics(self, results: list) -> dict:
        counts = defaultdict(lambda: [0, 0])  # (c, s) -> [correct, total]
        for c, s, ok in results:
            counts[(c, s)][0] += int(ok)
            counts[(c, s)][1] += 1
        acc = {k: v[0] / v[1] for k, v in counts.items()}
        ces = corruption_errors({k: 1.0 - a for k, a in acc.items()}, self.alexnet_err)
        corruptions = sorted({c for c, _ in acc},
                             key=lambda c: (IMAGENET_C_CORRUPTIONS.index(c)
                                            if c in IMAGENET_C_CORRUPTIONS else 99, c))
        severities = sorted({s for _, s in acc})
        metrics = {}
        if ces['mce'] is not None:
            metrics['mCE'] = 100.0 * ces['mce']
        metrics['top1'] = 100.0 * float(np.mean(list(acc.values())))
        for c in corruptions:
            metrics[f'top1_{c}'] = 100.0 * float(np.mean([a for (c2, _), a in acc.items()
                                                          if c2 == c]))
            if c in ces['ce']:
                metrics[f'CE_{c}'] = 100.0 * ces['ce'][c]
        for s in severities:
            metrics[f'top1_severity{s}'] = 100.0 * float(np.mean(
                [a for (_, s2), a in acc.items() if s2 == s]))

        logger = MMLogger.get_current_instance()
        header = f'{"corruption":<18}' + ''.join(f'{"s" + str(s):>8}' for s in severities) \
            + f'{"mean":>8}{"CE":>8}'
        lines = [header]
        for c in corruptions:
            row = f'{c:<18}' + ''.join(
                f'{100 * acc[(c, s)]:8.2f}' if (c, s) in acc else f'{"-":>8}'
                for s in severities)
            row += f'{metrics[f"top1_{c}"]:8.2f}'
            row += f'{metrics[f"CE_{c}"]:8.2f}' if f'CE_{c}' in metrics else f'{"-":>8}'
            lines.append(row)
        logger.info('ImageNet-C top-1 (%) per corruption and severity:\n' + '\n'.join(lines))
        known = [c for c in corruptions if c in self.alexnet_err]
        if ces['mce'] is not None and len(known) < len(IMAGENET_C_CORRUPTIONS):
            logger.warning(f'mCE is over {len(known)} of the {len(IMAGENET_C_CORRUPTIONS)} '
                           'standard corruptions only: not comparable with published mCE.')
        if ces['skipped']:
            logger.info(f'Not in the mCE (no AlexNet error): {ces["skipped"]}')
        if any(len([s for (c2, s) in acc if c2 == c]) < len(IMAGENET_C_SEVERITIES)
               for c in known):
            logger.warning('Some corruptions miss severities; their CE is normalised by '
                           "AlexNet's error averaged over all 5 severities.")
        return metrics
