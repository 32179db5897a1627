#!/usr/bin/env python
"""Fourier heat map of a checkpoint (Yin et al., "A Fourier Perspective on Model Robustness
in Computer Vision", NeurIPS 2019): its error rate under additive single-frequency
perturbations, one per frequency of the centred spectrum.

    python tools/analysis/fourier_heatmap.py CONFIG CKPT [--eps 4.0] [--size 31]
        [--max-images 1000] [--out-dir DIR] [--device cuda|cpu] [--batch-size B]
        [--seed 0] [--cfg-options k=v ...]

For each frequency ``(i, j)`` of the central ``size x size`` block of the centred spectrum
of the test images (``H x W`` after the test pipeline), every image ``x`` gets

    x' = clip(x + eps * s * U_ij, 0, 1)        (each channel; s = +-1 at random per image)

and the heat map holds the top-1 error on the ``x'``. ``U_ij`` (:func:`fourier_basis`) is
the real ``H x W`` image whose spectrum is 1 at ``(i, j)`` and at its conjugate-symmetric
partner and 0 elsewhere (a 2-D cosine wave), scaled to unit L2 norm; the same ``U_ij`` is
added to each of the three channels, so ``eps`` is the L2 norm of the perturbation of each
channel (``eps * sqrt(3)`` over the whole image). Scale: pixels in [0, 1] (the 0-255 images
of the pipeline divided by 255); the perturbed images are clipped to [0, 1], put back on the
0-255 scale, and then normalised by the model's data preprocessor, as in ``tools/test.py``.
Choose eps for the image size: a unit-norm cosine has a per-pixel amplitude of
``sqrt(2 / (H * W))``, so at a fixed eps larger images get a fainter wave (eps = 4 on
32 x 32 images is the amplitude of eps = 28 on 224 x 224 ones). The map is symmetric
(``U_ij`` and its partner are the same image), so each pair is evaluated once. Cost: about
``size**2 / 2`` passes over ``--max-images`` images (default 1000 images, 31 x 31
frequencies: ~480k forwards).

Frequencies: the centred spectrum puts frequency 0 (the DC term) at index ``(H // 2,
W // 2)``; heat-map cell ``[a, b]`` is the spectrum index ``(H // 2 - size // 2 + a,
W // 2 - size // 2 + b)``, i.e. the frequency ``(a - size // 2, b - size // 2)`` cycles per
image; the PNG's axes show these frequencies.

Outputs in ``--out-dir`` (default ``work_dirs/fourier_heatmap/<checkpoint name>``):
``fourier_heatmap.npy`` (``size x size`` float array of error rates in [0, 1]),
``fourier_heatmap.png`` (the map, centred frequency axes, colour bar) and
``fourier_heatmap.json`` (eps, image count, clean error, the frequency of each row/column).
"""
import json
import os
import os.path as osp
import sys
from typing import List, Optional, Tuple

import numpy as np
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:  # `python tools/analysis/...py` from anywhere
    sys.path.insert(0, ROOT)

from tools.analysis.frequency_analysis import (  # noqa: E402
    build_model, build_test_dataloader, default_device, gt_labels, iter_images,
    load_config, num_batches, parse_cfg_options, predict_labels, progress_bar, save_figure,
    tool_parser)

NPY_NAME = 'fourier_heatmap.npy'
PNG_NAME = 'fourier_heatmap.png'
JSON_NAME = 'fourier_heatmap.json'


def mirror_index(h: int, w: int, i: int, j: int) -> Tuple[int, int]:
    """Index, in the centred ``h x w`` spectrum, of the frequency opposite to ``(i, j)``
    (the conjugate-symmetric partner; itself for the DC term and Nyquist corners)."""
    return (2 * (h // 2) - i) % h, (2 * (w // 2) - j) % w


def fourier_basis(h: int, w: int, i: int, j: int, dtype=torch.float32) -> torch.Tensor:
    """``U_ij``: the real ``(h, w)`` image of unit L2 norm whose centred spectrum is nonzero
    only at index ``(i, j)`` and at its conjugate-symmetric partner ``mirror_index``.

    Built as Yin et al. do: a spectrum with 1 at ``(i, j)`` and at the partner (0
    elsewhere), un-shifted and inverse-FFT'd (real, since the spectrum is Hermitian), then
    divided by its L2 norm. Frequency 0 at index ``(h // 2, w // 2)``.
    """
    if not (0 <= i < h and 0 <= j < w):
        raise ValueError(f'frequency index ({i}, {j}) outside the {h} x {w} spectrum')
    spec = torch.zeros(h, w, dtype=torch.complex128)
    spec[i, j] = 1.0
    spec[mirror_index(h, w, i, j)] = 1.0
    img = torch.fft.ifft2(torch.fft.ifftshift(spec, dim=(-2, -1))).real
    return (img / img.norm()).to(dtype)


def heatmap_indices(h: int, w: int, size: int) -> Tuple[List[int], List[int]]:
    """Spectrum rows and columns of the central ``size x size`` block (clamped to h, w)."""
    rows = [h // 2 - size // 2 + a for a in range(size)]
    cols = [w // 2 - size // 2 + b for b in range(size)]
    if rows[0] < 0 or rows[-1] >= h or cols[0] < 0 or cols[-1] >= w:
        raise ValueError(f'--size {size} is larger than the {h} x {w} spectrum of the images')
    return rows, cols


def perturb(images: torch.Tensor, basis: torch.Tensor, eps: float,
            signs: torch.Tensor) -> torch.Tensor:
    """``clip(x/255 + eps * s * U, 0, 1) * 255`` for a ``(N, C, H, W)`` 0-255 batch."""
    x = images / 255.0 + eps * signs.view(-1, 1, 1, 1) * basis
    return x.clamp_(0.0, 1.0).mul_(255.0)


def compute_heatmap(config: str, checkpoint: str, eps: float = 4.0, size: int = 31,
                    max_images: Optional[int] = 1000, device: str = 'cpu',
                    batch_size: Optional[int] = None, seed: int = 0,
                    cfg_options: Optional[dict] = None) -> dict:
    cfg = load_config(config, cfg_options)
    model = build_model(cfg, checkpoint, device)
    loader = build_test_dataloader(cfg, batch_size)

    # the test images, once (uint8 range as float) -- reused for every frequency
    batches = []
    bar = progress_bar(num_batches(loader, max_images), 'loading test images')
    for images, samples in iter_images(loader, max_images):
        if len({tuple(x.shape) for x in images}) != 1 or (
                batches and tuple(images[0].shape) != tuple(batches[0][0].shape[1:])):
            raise ValueError('The Fourier heat map needs test images of one size (a test '
                             'pipeline that crops or resizes to a fixed size).')
        batches.append((torch.stack(images), samples, gt_labels(samples)))
        bar.update()
    bar.close()
    if not batches:
        raise RuntimeError(f'No test images for {config}.')
    n_images = sum(len(b[2]) for b in batches)
    _, h, w = batches[0][0].shape[1:]
    rows, cols = heatmap_indices(h, w, size)

    gen = torch.Generator().manual_seed(seed)
    signs = [torch.randint(0, 2, (len(b[2]), ), generator=gen).float() * 2 - 1
             for b in batches]

    def error_rate(perturbation=None) -> float:
        wrong = 0
        if perturbation is not None:
            perturbation = perturbation.to(device)
        for (images, samples, gt), s in zip(batches, signs):
            images = images.to(device)
            x = images if perturbation is None else perturb(images, perturbation, eps,
                                                            s.to(device))
            pred = predict_labels(model, x, samples, device)
            wrong += int((pred != gt).sum())
        return wrong / n_images

    clean_error = error_rate()
    heat = np.full((size, size), np.nan, dtype=np.float64)
    done = {}
    pairs = []
    for a, i in enumerate(rows):
        for b, j in enumerate(cols):
            key = min((i, j), mirror_index(h, w, i, j))
            pairs.append((a, b, i, j, key))
    todo = len({p[4] for p in pairs})
    bar = progress_bar(todo, f'Fourier heat map ({todo} distinct frequencies x '
                             f'{n_images} images)')
    for a, b, i, j, key in pairs:
        if key not in done:
            done[key] = error_rate(fourier_basis(h, w, i, j))
            bar.update()
        heat[a, b] = done[key]
    bar.close()
    freqs_y = [i - h // 2 for i in rows]
    freqs_x = [j - w // 2 for j in cols]
    return dict(heatmap=heat, clean_error=clean_error, num_images=n_images, eps=eps,
                image_size=[h, w], freqs_y=freqs_y, freqs_x=freqs_x)


def plot_heatmap(path: str, result: dict, title: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    heat = result['heatmap']
    fy, fx = result['freqs_y'], result['freqs_x']
    fig, ax = plt.subplots(figsize=(6, 5.2), dpi=120)
    im = ax.imshow(heat, cmap='jet', vmin=0.0, vmax=1.0, origin='upper',
                   extent=(fx[0] - 0.5, fx[-1] + 0.5, fy[-1] + 0.5, fy[0] - 0.5),
                   interpolation='nearest')
    cbar = fig.colorbar(im, ax=ax)
    cbar.set_label('error rate')
    ax.set_xlabel('horizontal frequency (cycles per image)')
    ax.set_ylabel('vertical frequency (cycles per image)')
    h, w = result['image_size']
    ax.set_title(f'{title}\nFourier heat map, L2 eps={result["eps"]:g} per channel '
                 f'([0,1] pixels), {h}x{w} images\n'
                 f'{result["num_images"]} images, clean error {result["clean_error"]:.3f}',
                 fontsize=9)
    save_figure(fig, path)


def parse_args(argv=None):
    p = tool_parser('Fourier heat map (Yin et al. 2019) of a checkpoint', __doc__)
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--eps', type=float, default=4.0,
                   help='L2 norm of the perturbation of each channel, [0,1] pixel scale')
    p.add_argument('--size', type=int, default=31,
                   help='the central size x size frequencies of the spectrum (default 31)')
    p.add_argument('--max-images', type=int, default=1000,
                   help='the first N test images (default 1000; 0: all)')
    p.add_argument('--out-dir', default=None,
                   help='default: work_dirs/fourier_heatmap/<checkpoint name>')
    p.add_argument('--device', default=default_device())
    p.add_argument('--batch-size', type=int, default=None,
                   help="default: the config's test_dataloader.batch_size")
    p.add_argument('--seed', type=int, default=0, help='seed of the random signs')
    p.add_argument('--cfg-options', nargs='+', default=None,
                   help='override config entries (k=v, as tools/test.py)')
    args = p.parse_args(argv)
    if args.size < 1:
        p.error('--size must be >= 1')
    if args.eps < 0:
        p.error('--eps must be >= 0')
    if args.max_images is not None and args.max_images <= 0:
        args.max_images = None
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    name = osp.splitext(osp.basename(args.checkpoint))[0]
    out_dir = args.out_dir or osp.join('work_dirs', 'fourier_heatmap', name)
    os.makedirs(out_dir, exist_ok=True)
    result = compute_heatmap(args.config, args.checkpoint, args.eps, args.size,
                             args.max_images, args.device, args.batch_size, args.seed,
                             parse_cfg_options(args.cfg_options))
    npy, png, meta = (osp.join(out_dir, n) for n in (NPY_NAME, PNG_NAME, JSON_NAME))
    np.save(npy, result['heatmap'])
    plot_heatmap(png, result, name)
    with open(meta, 'w') as f:
        json.dump(dict(config=args.config, checkpoint=args.checkpoint, seed=args.seed,
                       pixel_scale='[0, 1]', **{k: v for k, v in result.items()
                                                if k != 'heatmap'}), f, indent=2)
    print(f'clean error {result["clean_error"]:.4f}; heat map error min '
          f'{np.nanmin(result["heatmap"]):.4f} max {np.nanmax(result["heatmap"]):.4f}',
          flush=True)
    print(f'Wrote {npy}, {png} and {meta}', flush=True)
    return dict(npy=npy, png=png, json=meta, **result)


if __name__ == '__main__':
    main()
