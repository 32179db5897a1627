#!/usr/bin/env python
"""Top-1 of one or more checkpoints on low-pass and high-pass filtered validation images.

    python tools/analysis/frequency_analysis.py CONFIG CKPT [CONFIG CKPT ...]
        [--radii 0,2,4,8,16,32] [--labels base hat] [--out-dir DIR] [--device cuda|cpu]
        [--max-images N] [--batch-size B] [--cfg-options k=v ...]

For every checkpoint and radius ``r`` the test images (``test_dataloader`` of its config)
are evaluated three ways: unfiltered, low-pass (only the frequencies within distance ``r``
of the centre of the centred 2-D spectrum, ``hat_mm.frequency.low_pass``) and high-pass
(the image minus its low-pass, ``hat_mm.frequency.high_pass``). A model that relies on
high frequencies keeps more accuracy on the high-pass images; HAT is meant to make a ViT
use them better.

Where the filter acts: in pixel space, on each channel of the images as the test pipeline
yields them (uint8 values 0-255 as float, after resize/crop), BEFORE the model's data
preprocessor normalises them with the config's mean/std. The filtered images are not
clipped: a high-pass image is centred on zero (its mean colour, the DC term, is removed for
every r >= 0) and a low-pass one may overshoot 0-255 slightly; normalisation then maps them
as it maps any image. Radius unit: distance in frequency-index steps from the DC term, so
``r >= sqrt(2) * size / 2`` keeps everything in the low-pass (and nothing in the high-pass).

Outputs in ``--out-dir`` (default ``work_dirs/frequency_analysis``):

- ``frequency_accuracy.csv``: ``label, checkpoint, filter, radius, top1, num_images``, one
  row per checkpoint and (filter, radius), plus one ``filter=none`` row (unfiltered; empty
  radius) per checkpoint;
- ``frequency_accuracy.png``: top-1 vs radius, one colour per checkpoint, low-pass solid,
  high-pass dashed, unfiltered top-1 dotted.

Configs that train with HAT (``runner_type='HATRunner'``) are rewritten by
``hat_mm.engine.apply_hat`` first, as the runner does; checkpoints load strictly
(``hat_mm.utils.load_weights_strict``).
"""
import argparse
import csv
import math
import os
import os.path as osp
import sys
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:  # `python tools/analysis/...py` from anywhere
    sys.path.insert(0, ROOT)

CSV_NAME = 'frequency_accuracy.csv'
PNG_NAME = 'frequency_accuracy.png'
CSV_COLUMNS = ('label', 'checkpoint', 'filter', 'radius', 'top1', 'num_images')


# ----------------------------------------------------------------------------------------
# helpers shared with tools/analysis/fourier_heatmap.py
# ----------------------------------------------------------------------------------------
def default_device() -> str:
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def load_config(config: str, cfg_options: Optional[dict] = None):
    """The config as the runner sees it (HAT configs rewritten by ``apply_hat``)."""
    import hat_mm  # noqa: F401  (registers HAT types)
    from mmengine.config import Config
    from hat_mm.engine import apply_hat
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('runner_type') == 'HATRunner':
        cfg = apply_hat(cfg)
    return cfg


def build_model(cfg, checkpoint: str, device: str) -> torch.nn.Module:
    """Build ``cfg.model``, load every weight of ``checkpoint`` strictly, eval mode."""
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    from hat_mm.utils import load_weights_strict
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:  # as mmengine's Runner merges it
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    load_weights_strict(model, checkpoint)
    return model.to(device).eval()


def build_test_dataloader(cfg, batch_size: Optional[int] = None):
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    from hat_mm.utils import check_dataset_paths
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    check_dataset_paths(cfg, ['test_dataloader'])
    loader_cfg = dict(cfg.test_dataloader)
    if batch_size is not None:
        loader_cfg['batch_size'] = batch_size
    return Runner.build_dataloader(loader_cfg)


def iter_images(dataloader, max_images: Optional[int] = None
                ) -> Iterator[Tuple[List[torch.Tensor], list]]:
    """Yield ``(images, data_samples)`` batches, ``images`` a list of float CHW tensors in
    pixel scale (0-255), stopping after ``max_images`` images."""
    seen = 0
    for batch in dataloader:
        inputs, samples = batch['inputs'], batch['data_samples']
        if isinstance(inputs, torch.Tensor):
            inputs = list(inputs)
        if max_images is not None:
            keep = max_images - seen
            inputs, samples = inputs[:keep], samples[:keep]
        if not inputs:
            break
        seen += len(inputs)
        yield [x.float() for x in inputs], samples
        if max_images is not None and seen >= max_images:
            break


def num_batches(dataloader, max_images: Optional[int]) -> int:
    n = len(dataloader.dataset)
    if max_images is not None:
        n = min(n, max_images)
    return math.ceil(n / dataloader.batch_size)


def apply_per_image(fn, images: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """``fn`` on a batch: one call on the stacked batch when all shapes agree."""
    if len({tuple(x.shape) for x in images}) == 1:
        return list(fn(torch.stack(list(images))))
    return [fn(x[None])[0] for x in images]


@torch.no_grad()
def predict_labels(model, images, samples: list,
                   device: str) -> torch.Tensor:
    """Arg-max class of each image (a list of CHW or an NCHW tensor, pixel-scale floats):
    the model's data preprocessor (to_rgb, mean/std) and its test path, as ``tools/test.py``
    runs them."""
    if isinstance(images, torch.Tensor):
        inputs = images.to(device)
    elif len({tuple(x.shape) for x in images}) == 1:
        inputs = torch.stack([x.to(device) for x in images])  # one batched preprocessing
    else:
        inputs = [x.to(device) for x in images]
    data = dict(inputs=inputs, data_samples=samples)
    outputs = model.test_step(data)
    return torch.stack([o.pred_score.argmax() for o in outputs]).cpu()


def gt_labels(samples: list) -> torch.Tensor:
    return torch.stack([torch.as_tensor(s.gt_label).reshape(-1)[0] for s in samples]).cpu()


def progress_bar(total: int, desc: str = ''):
    """A progress bar with ``update(n=1)`` and ``close()``: tqdm if installed, else
    mmengine's."""
    try:
        from tqdm import tqdm
        # in a log file (no terminal) one line every 30 s instead of every update
        return tqdm(total=total, desc=desc, file=sys.stdout, dynamic_ncols=True,
                    mininterval=0.1 if sys.stdout.isatty() else 30.0)
    except ImportError:  # pragma: no cover
        from mmengine.utils import ProgressBar

        class _Bar:
            def __init__(self):
                if desc:
                    print(desc, flush=True)
                self.bar = ProgressBar(total)

            def update(self, n=1):
                for _ in range(n):
                    self.bar.update()

            def close(self):
                print(flush=True)

        return _Bar()


def parse_cfg_options(values: Optional[Sequence[str]]) -> dict:
    if not values:
        return {}
    from mmengine.config import DictAction
    ns = argparse.Namespace()
    DictAction(option_strings=[], dest='opts')(None, ns, list(values))
    return ns.opts


# ----------------------------------------------------------------------------------------
# the analysis
# ----------------------------------------------------------------------------------------
def parse_radii(text: Optional[str]) -> Optional[List[float]]:
    if text is None:
        return None
    radii = [float(r) for r in text.replace(' ', '').split(',') if r != '']
    if not radii or any(r < 0 for r in radii):
        raise ValueError(f'--radii must be a comma-separated list of numbers >= 0, got {text!r}')
    return sorted(set(radii))


def default_radii(height: int, width: int) -> List[float]:
    """0, 1, 2, 4, ... (doubling, with midpoints from 8) up to the spectrum's corner."""
    r_max = math.ceil(math.hypot(height // 2, width // 2))
    radii, r = [0.0, 1.0], 2.0
    while r < r_max:
        radii.append(r)
        if r >= 8 and r * 1.5 < r_max:
            radii.append(r * 1.5)
        r *= 2
    radii.append(float(r_max))
    return sorted(set(radii))


def evaluate_checkpoint(config: str, checkpoint: str, radii: Optional[List[float]],
                        device: str, max_images: Optional[int] = None,
                        batch_size: Optional[int] = None, cfg_options: Optional[dict] = None,
                        desc: str = '') -> Tuple[Dict[Tuple[str, float], float], int,
                                                 List[float]]:
    """``{(filter, radius): top1 %}`` (``('none', None)``: unfiltered), image count, radii."""
    from hat_mm.frequency import high_pass, low_pass
    cfg = load_config(config, cfg_options)
    model = build_model(cfg, checkpoint, device)
    loader = build_test_dataloader(cfg, batch_size)
    correct: Dict[Tuple[str, float], int] = {}
    total = 0
    bar = progress_bar(num_batches(loader, max_images), desc)
    for images, samples in iter_images(loader, max_images):
        if radii is None:
            radii = default_radii(*images[0].shape[-2:])
        gt = gt_labels(samples)
        images = [x.to(device) for x in images]  # filter where the model runs
        variants = [(('none', None), images)]
        for r in radii:
            variants.append((('low', r), apply_per_image(lambda x: low_pass(x, r), images)))
            variants.append((('high', r), apply_per_image(lambda x: high_pass(x, r), images)))
        for key, imgs in variants:
            pred = predict_labels(model, imgs, samples, device)
            correct[key] = correct.get(key, 0) + int((pred == gt).sum())
        total += len(images)
        bar.update()
    bar.close()
    if total == 0:
        raise RuntimeError(f'No test images for {config}.')
    return {k: 100.0 * v / total for k, v in correct.items()}, total, radii


def write_csv(path: str, rows: List[dict]) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def plot(path: str, results: List[Tuple[str, Dict[Tuple[str, float], float]]],
         num_images: int) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for i, (label, acc) in enumerate(results):
        colour = colours[i % len(colours)]
        for filt, style, name in (('low', '-', 'low-pass'), ('high', '--', 'high-pass')):
            pts = sorted((r, a) for (f, r), a in acc.items() if f == filt)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=colour,
                    marker='o', markersize=3, label=f'{label}: {name}')
        clean = next((a for (f, _), a in acc.items() if f == 'none'), None)
        if clean is not None:
            ax.axhline(clean, color=colour, linestyle=':', linewidth=1,
                       label=f'{label}: unfiltered ({clean:.1f}%)')
    ax.set_title(f'Top-1 on frequency-filtered images ({num_images} images per model)\n'
                 'low-pass keeps frequencies within the radius, high-pass the rest')
    ax.set_xlabel('filter radius (distance from the spectrum centre, frequency steps)')
    ax.set_ylabel('top-1 accuracy (%)')
    ax.set_ylim(-2, 102)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc='best')
    save_figure(fig, path)


def save_figure(fig, path: str) -> None:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def tool_parser(description: str, doc: str) -> argparse.ArgumentParser:
    """The argument parser of an analysis tool, its module docstring as the epilog."""
    return argparse.ArgumentParser(description=description, epilog=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def parse_args(argv=None):
    p = tool_parser('Top-1 on low-/high-pass filtered test images for several checkpoints',
                    __doc__)
    p.add_argument('pairs', nargs='+', metavar='CONFIG CKPT',
                   help='one or more config/checkpoint pairs')
    p.add_argument('--radii', default=None,
                   help='comma-separated radii (default: 0,1,2,4,8,12,16,24,... up to the '
                   "spectrum's corner)")
    p.add_argument('--labels', nargs='+', default=None,
                   help='one name per checkpoint for the CSV and legend (default: file names)')
    p.add_argument('--out-dir', default='work_dirs/frequency_analysis')
    p.add_argument('--device', default=default_device())
    p.add_argument('--max-images', type=int, default=None,
                   help='evaluate only the first N test images (default: all)')
    p.add_argument('--batch-size', type=int, default=None,
                   help="default: the config's test_dataloader.batch_size")
    p.add_argument('--cfg-options', nargs='+', default=None,
                   help='override entries of every config (k=v, as tools/test.py)')
    args = p.parse_args(argv)
    if len(args.pairs) % 2:
        p.error('give CONFIG CKPT pairs (an even number of positional arguments)')
    args.pairs = list(zip(args.pairs[0::2], args.pairs[1::2]))
    from hat_mm.utils import CheckpointError, check_checkpoint_file
    from hat_mm.utils.config_checks import check_config_file
    for config, ckpt in args.pairs:  # every pair, before the first is evaluated
        try:
            check_config_file(config, 'frequency_analysis.py CONFIG CKPT [CONFIG CKPT ...]')
            check_checkpoint_file(ckpt)
        except (OSError, ValueError, CheckpointError) as err:
            p.error(str(err))
    if args.labels is not None and len(args.labels) != len(args.pairs):
        p.error(f'--labels needs one name per checkpoint ({len(args.pairs)}), got '
                f'{len(args.labels)}')
    if args.max_images is not None and args.max_images < 1:
        p.error('--max-images must be >= 1')
    try:
        args.radii = parse_radii(args.radii)
    except ValueError as e:
        p.error(str(e))
    return args


def default_labels(pairs: List[Tuple[str, str]]) -> List[str]:
    labels = [osp.splitext(osp.basename(ckpt))[0] for _, ckpt in pairs]
    if len(set(labels)) < len(labels):
        labels = [f'{osp.splitext(osp.basename(cfg))[0]}/{lab}'
                  for (cfg, _), lab in zip(pairs, labels)]
    if len(set(labels)) < len(labels):
        labels = [f'{i}:{lab}' for i, lab in enumerate(labels)]
    return labels


def main(argv=None) -> dict:
    args = parse_args(argv)
    labels = args.labels or default_labels(args.pairs)
    cfg_options = parse_cfg_options(args.cfg_options)
    os.makedirs(args.out_dir, exist_ok=True)
    rows, results, n_images = [], [], None
    radii = args.radii
    for label, (config, ckpt) in zip(labels, args.pairs):
        acc, n, radii = evaluate_checkpoint(config, ckpt, radii, args.device,
                                            args.max_images, args.batch_size, cfg_options,
                                            desc=f'{label} ({len(radii) if radii else "?"}'
                                            ' radii x 2 filters + unfiltered)')
        n_images = n if n_images is None else min(n_images, n)
        results.append((label, acc))
        clean = next(a for (f, _), a in acc.items() if f == 'none')
        rows.append(dict(label=label, checkpoint=ckpt, filter='none', radius='',
                         top1=f'{clean:.4f}', num_images=n))
        for filt in ('low', 'high'):
            for r in radii:
                rows.append(dict(label=label, checkpoint=ckpt, filter=filt,
                                 radius=f'{r:g}', top1=f'{acc[(filt, r)]:.4f}',
                                 num_images=n))
        print(f'{label}: unfiltered {clean:.2f}% | ' + ' '.join(
            f'r={r:g}: low {acc[("low", r)]:.1f} high {acc[("high", r)]:.1f}'
            for r in radii), flush=True)
    csv_path = osp.join(args.out_dir, CSV_NAME)
    png_path = osp.join(args.out_dir, PNG_NAME)
    write_csv(csv_path, rows)
    plot(png_path, results, n_images)
    print(f'Wrote {csv_path} and {png_path}', flush=True)
    return dict(csv=csv_path, png=png_path, rows=rows, radii=radii)


if __name__ == '__main__':
    main()
