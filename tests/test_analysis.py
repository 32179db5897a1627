"""Frequency analysis tools and robustness benchmarks: the filters and the Fourier basis,
mCE and the 200-class restriction against numbers computed by hand, and each tool end to
end on the demo data (CPU, small settings)."""
import csv
import json
import math
import os
import os.path as osp
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from hat_mm.frequency import centred_spectrum, high_pass, low_pass, radial_mask

from .runner_utils import DEMO_CONFIG, ROOT, run_tool

# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------
PREDICTED_CLASS = 3  # the class the constant demo model always predicts


def _demo_model():
    import hat_mm  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    from hat_mm.engine import apply_hat
    init_default_scope('mmpretrain')
    cfg = apply_hat(Config.fromfile(DEMO_CONFIG))
    return MODELS.build(cfg.model)


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """Two demo checkpoints, no training: ``random`` (PyTorch's default initialisation)
    and ``constant`` (head weights 0, bias one-hot: always predicts PREDICTED_CLASS)."""
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp('ckpts')
    model = _demo_model()
    random_ckpt = str(d / 'random.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, random_ckpt)
    head = model.head.layers.head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[PREDICTED_CLASS] = 1.0
    constant_ckpt = str(d / 'constant.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, constant_ckpt)
    return dict(random=random_ckpt, constant=constant_ckpt)


def _data_options(root):
    return [f'test_dataloader.dataset.data_root={root}', 'test_dataloader.num_workers=0',
            'test_dataloader.persistent_workers=False', 'test_dataloader.batch_size=16']


def _val_labels(digits_root, n):
    with open(osp.join(digits_root, 'meta', 'val.txt')) as f:
        return [int(line.split()[1]) for line in f.read().split('\n')[:n] if line.strip()]


def _assert_png(path):
    assert osp.isfile(path) and osp.getsize(path) > 0
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.size[0] > 0 and im.size[1] > 0


# --------------------------------------------------------------------------------------
# filters and the Fourier basis
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize('shape', [(2, 3, 32, 32), (3, 17, 20)])
@pytest.mark.parametrize('radius', [0, 1, 3.5, 8, 100])
def test_low_plus_high_pass_is_the_image(shape, radius):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1)) * 255
    assert torch.allclose(low_pass(x, radius) + high_pass(x, radius), x, atol=1e-3)


@pytest.mark.parametrize('shape', [(2, 3, 32, 32), (1, 15, 22)])
@pytest.mark.parametrize('radius', [0, 2, 5.5, 11])
def test_high_pass_removes_everything_within_the_radius(shape, radius):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(2)) * 255
    h, w = shape[-2:]
    inside = radial_mask(h, w, radius)
    spec_x = centred_spectrum(x)
    scale = spec_x.abs().max()  # the DC term, ~ mean * h * w
    spec_hp = centred_spectrum(high_pass(x, radius))
    assert spec_hp[..., inside].abs().max() <= 1e-5 * scale
    # ... and keeps what is outside unchanged; the low-pass is the complement
    assert torch.allclose(spec_hp[..., ~inside], spec_x[..., ~inside], atol=1e-4 * scale)
    spec_lp = centred_spectrum(low_pass(x, radius))
    assert spec_lp[..., ~inside].abs().max() <= 1e-5 * scale


def test_low_pass_radius_is_the_euclidean_distance_of_the_frequency():
    """Plane waves with frequency (1, 1) (distance sqrt 2), (2, 0) (distance 2) and (2, 2)
    (distance sqrt 8) on a 16 x 16 grid: a radius keeps a wave whole or removes it whole,
    by that distance; the input's dtype is kept."""
    n = 16
    y, x = torch.meshgrid(torch.arange(n), torch.arange(n), indexing='ij')
    diagonal = torch.cos(2 * math.pi * (y + x) / n)
    vertical = torch.cos(2 * math.pi * 2 * y / n)
    diagonal2 = torch.cos(2 * math.pi * 2 * (y + x) / n)
    zero = torch.zeros(n, n)
    for wave, radius, kept in ((diagonal, 1.5, True), (vertical, 1.5, False),
                               (vertical, 2.0, True), (diagonal2, 2.5, False),
                               (diagonal2, 2.9, True)):
        torch.testing.assert_close(low_pass(wave, radius), wave if kept else zero, atol=1e-5,
                                   rtol=0, msg=f'radius {radius}')
    assert low_pass(diagonal.bfloat16(), 1.5).dtype == torch.bfloat16
    assert high_pass(diagonal.half(), 1.5).dtype == torch.half


def test_high_pass_radius_zero_removes_the_mean_only():
    x = torch.rand(3, 16, 16) * 255
    hp = high_pass(x, 0)
    assert torch.allclose(hp, x - x.mean(dim=(-2, -1), keepdim=True), atol=1e-3)


@pytest.mark.parametrize('h,w,i,j', [
    (8, 8, 4, 4),  # DC
    (8, 8, 4, 5),  # lowest horizontal frequency
    (8, 8, 1, 6),
    (8, 8, 0, 0),  # Nyquist corner: its own partner
    (9, 7, 2, 5),  # odd sizes
    (32, 32, 13, 22),
])
def test_fourier_basis_has_unit_norm_and_its_frequency(h, w, i, j):
    from tools.analysis.fourier_heatmap import fourier_basis, mirror_index
    u = fourier_basis(h, w, i, j)
    assert u.shape == (h, w) and not u.is_complex()
    assert abs(float(u.norm()) - 1.0) < 1e-5
    spec = centred_spectrum(u).abs() ** 2
    mi, mj = mirror_index(h, w, i, j)
    # the mirror of the frequency (u, v) is (-u, -v) around the centre
    assert ((mi - h // 2) % h, (mj - w // 2) % w) == ((h // 2 - i) % h, (w // 2 - j) % w)
    at_freq = spec[i, j] + (spec[mi, mj] if (mi, mj) != (i, j) else 0)
    assert at_freq / spec.sum() > 1 - 1e-6
    assert spec[i, j] > 0.1 * spec.sum()
    assert torch.allclose(fourier_basis(h, w, mi, mj), u, atol=1e-6)  # same image


def test_fourier_perturbation_has_norm_eps_per_channel():
    from tools.analysis.fourier_heatmap import fourier_basis, perturb
    x = torch.full((2, 3, 8, 8), 128.0)
    u = fourier_basis(8, 8, 3, 5)
    out = perturb(x, u, eps=0.5, signs=torch.tensor([1.0, -1.0]))
    diff = (out - x) / 255.0  # [0, 1] pixel scale
    for n, s in enumerate((1.0, -1.0)):
        for c in range(3):
            assert torch.allclose(diff[n, c], s * 0.5 * u, atol=1e-5)
    big = perturb(x, u, eps=1e3, signs=torch.ones(2))  # clipped to the valid range
    assert float(big.min()) >= 0.0 and float(big.max()) <= 255.0


# --------------------------------------------------------------------------------------
# robustness metrics against hand-computed numbers
# --------------------------------------------------------------------------------------
def _sample(scores, gt, **meta):
    return dict(pred_score=torch.tensor(scores, dtype=torch.float32),
                gt_label=torch.tensor([gt]), **meta)


def test_mce_against_hand_computation():
    from hat_mm.evaluation import ALEXNET_ERR, ImageNetCMetric
    assert ALEXNET_ERR['gaussian_noise'] == 0.886428 and ALEXNET_ERR['fog'] == 0.819324
    right, wrong = [0.9, 0.1], [0.2, 0.8]  # 2-class scores, ground truth class 0
    # (corruption, severity): (correct, total)
    table = {('gaussian_noise', 1): (3, 4), ('gaussian_noise', 2): (1, 4),
             ('fog', 1): (2, 2), ('fog', 2): (1, 2)}
    metric = ImageNetCMetric()
    samples = []
    for (c, s), (ok, n) in table.items():
        samples += [_sample(right if k < ok else wrong, 0, corruption=c, severity=s)
                    for k in range(n)]
    metric.process({}, samples)
    m = metric.compute_metrics(metric.results)
    # errors: gaussian_noise 0.25, 0.75 (mean 0.5); fog 0.0, 0.5 (mean 0.25)
    ce_gauss = (0.25 + 0.75) / (2 * 0.886428)
    ce_fog = (0.0 + 0.5) / (2 * 0.819324)
    assert m['CE_gaussian_noise'] == pytest.approx(100 * ce_gauss)  # 56.406...
    assert m['CE_fog'] == pytest.approx(100 * ce_fog)  # 30.513...
    assert m['mCE'] == pytest.approx(100 * (ce_gauss + ce_fog) / 2)  # 43.459...
    assert m['mCE'] == pytest.approx(43.4596, abs=1e-3)
    assert m['top1_gaussian_noise'] == pytest.approx(50.0)
    assert m['top1_fog'] == pytest.approx(75.0)
    assert m['top1'] == pytest.approx((75 + 25 + 100 + 50) / 4)
    assert m['top1_severity1'] == pytest.approx((75 + 100) / 2)
    assert m['top1_severity2'] == pytest.approx((25 + 50) / 2)


def test_corruption_error_is_sum_over_severities_over_alexnet_sum():
    from hat_mm.evaluation import corruption_errors
    errs = {('snow', s): e for s, e in zip(range(1, 6), (0.1, 0.2, 0.3, 0.4, 0.5))}
    errs.update({('contrast', s): 0.6 for s in range(1, 6)})
    errs.update({('speckle_noise', s): 0.9 for s in range(1, 6)})  # extra: not in mCE
    out = corruption_errors(errs)
    assert out['ce']['snow'] == pytest.approx(1.5 / (5 * 0.866816))
    assert out['ce']['contrast'] == pytest.approx(3.0 / (5 * 0.853204))
    assert out['mce'] == pytest.approx((1.5 / 4.33408 + 3.0 / 4.26602) / 2)
    assert out['skipped'] == ['speckle_noise']


def test_imagenet_c_metric_reads_corruption_and_severity_from_the_dataset():
    """One source: the metainfo the ImageNetC dataset sets (not the image path)."""
    from hat_mm.evaluation import ImageNetCMetric
    metric = ImageNetCMetric()
    with pytest.raises(KeyError, match="type='ImageNetC'"):
        metric.process({}, [_sample([1.0, 0.0], 0, img_path='/d/fog/3/n01440764/a.JPEG')])
    metric.process({}, [
        _sample([1.0, 0.0], 0, corruption='fog', severity=3),
        _sample([1.0, 0.0], 1, corruption='fog', severity=3)])
    m = metric.compute_metrics(metric.results)
    assert m['top1_fog'] == pytest.approx(50.0)
    assert m['CE_fog'] == pytest.approx(100 * 0.5 / 0.819324)


def test_200_class_lists():
    from hat_mm.datasets import (IMAGENET_A_INDICES, IMAGENET_A_WNIDS, IMAGENET_R_INDICES,
                                 IMAGENET_R_WNIDS)
    for idx, wnids in ((IMAGENET_A_INDICES, IMAGENET_A_WNIDS),
                       (IMAGENET_R_INDICES, IMAGENET_R_WNIDS)):
        assert len(idx) == len(set(idx)) == 200 and list(idx) == sorted(idx)
        assert 0 <= idx[0] and idx[-1] < 1000
        assert len(wnids) == len(set(wnids)) == 200 and list(wnids) == sorted(wnids)
    assert IMAGENET_A_INDICES != IMAGENET_R_INDICES
    # spot checks: ImageNet-A starts at class 6 (stingray), ImageNet-R at 1 (goldfish)
    assert IMAGENET_A_INDICES[:5] == (6, 11, 13, 15, 17) and IMAGENET_A_INDICES[-1] == 988
    assert IMAGENET_R_INDICES[:5] == (1, 2, 4, 6, 8) and IMAGENET_R_INDICES[-1] == 988
    assert IMAGENET_A_WNIDS[0] == 'n01498041' and IMAGENET_R_WNIDS[0] == 'n01443537'
    assert len(set(IMAGENET_A_INDICES) & set(IMAGENET_R_INDICES)) == 86  # they overlap


def test_200_class_restriction_against_hand_computation():
    from hat_mm.datasets import IMAGENET_A_INDICES
    from hat_mm.evaluation import SubsetAccuracy, restrict_to_subset
    a0, a1, a2 = IMAGENET_A_INDICES[:3]  # 1000-class indices 6, 11, 13
    assert (a0, a1, a2) == (6, 11, 13)

    def scores(**at):
        s = torch.full((1000, ), 1e-4)
        for k, v in at.items():
            s[int(k[1:])] = v
        return s.tolist()

    samples = [
        # global arg-max 0 is not an ImageNet-A class; among the 200: class 11 = position 1
        _sample(scores(c0=0.9, c11=0.05, c6=0.01), 1),  # right (only after restriction)
        _sample(scores(c6=0.3, c11=0.4), 0),  # wrong: position 1 beats position 0
        _sample(scores(c999=0.7, c13=0.2), 2),  # right: 999 is outside the subset
        _sample(scores(c7=0.5, c6=0.4, c13=0.45), 0),  # wrong (position 2), top-2 right
    ]
    restricted = restrict_to_subset(torch.tensor([s['pred_score'].tolist() for s in samples]),
                                    'imagenet-a')
    assert restricted.shape == (4, 200)
    assert restricted.argmax(1).tolist() == [1, 1, 2, 2]
    metric = SubsetAccuracy(indices='imagenet-a', topk=(1, 2))
    assert metric.prefix == 'imagenet-a'
    metric.process({}, samples)
    m = metric.compute_metrics(metric.results)
    assert m['top1'] == pytest.approx(50.0)  # 2 of 4
    assert m['top2'] == pytest.approx(100.0)  # all 4: sample 2 -> {1, 0}, sample 4 -> {2, 0}
    # without the restriction the same predictions would be right 0 times in 4
    full_argmax = [int(s['pred_score'].argmax()) for s in samples]
    assert full_argmax == [0, 11, 999, 7]
    assert all(IMAGENET_A_INDICES[g] != p for g, p in zip((1, 0, 2, 0), full_argmax))


def test_wnid_folder_dataset_labels_by_the_wnid_list(tmp_path):
    from hat_mm.datasets import IMAGENET_R_WNIDS
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    init_default_scope('mmpretrain')
    for wnid in (IMAGENET_R_WNIDS[0], IMAGENET_R_WNIDS[7], IMAGENET_R_WNIDS[199]):
        os.makedirs(tmp_path / 'r' / wnid)
        Image.new('RGB', (8, 8)).save(tmp_path / 'r' / wnid / 'x.jpg')
    (tmp_path / 'r' / 'README.txt').write_text('not a class')
    ds = DATASETS.build(dict(type='WnidFolderDataset', data_root=str(tmp_path / 'r'),
                             wnids='imagenet-r'))
    assert sorted(ds.get_gt_labels().tolist()) == [0, 7, 199]  # missing folders: warned
    assert len(ds.metainfo['classes']) == 200
    os.makedirs(tmp_path / 'r' / 'n99999999')
    with pytest.raises(ValueError, match='n99999999'):
        DATASETS.build(dict(type='WnidFolderDataset', data_root=str(tmp_path / 'r'),
                            wnids='imagenet-r'))
    with pytest.raises(ValueError, match='expected 1000'):  # Sketch-style: all 1000 folders
        DATASETS.build(dict(type='WnidFolderDataset', data_root=str(tmp_path / 'r'),
                            num_classes=1000))


def test_robustness_configs_parse_and_build_their_evaluators():
    from mmengine.config import Config
    from mmengine.evaluator import Evaluator
    from mmengine.registry import init_default_scope
    import hat_mm.evaluation  # noqa: F401
    init_default_scope('mmpretrain')
    names = ['imagenet-c', 'imagenet-a', 'imagenet-r', 'imagenet-sketch',
             'stylized-imagenet']
    for name in names:
        cfg = Config.fromfile(osp.join(ROOT, 'configs', 'robustness', f'hat_vit_t_{name}.py'))
        assert cfg.runner_type == 'HATRunner' and cfg.model.head.num_classes == 1000
        assert cfg.custom_imports['imports'] == ['hat_mm']  # registers the benchmarks too
        ds = cfg.test_dataloader.dataset
        assert ds.type == ('ImageNetC' if name == 'imagenet-c' else 'WnidFolderDataset')
        assert 'split' not in ds and 'ann_file' not in ds
        Evaluator(cfg.test_evaluator)  # builds the metric
    a = Config.fromfile(osp.join(ROOT, 'configs', 'robustness', 'hat_vit_t_imagenet-a.py'))
    assert a.test_dataloader.dataset.wnids == a.test_evaluator.indices == 'imagenet-a'
    assert a.test_dataloader.dataset.pipeline[-1]['type'] == 'PackInputs'


# --------------------------------------------------------------------------------------
# the tools end to end on the demo data
# --------------------------------------------------------------------------------------
def test_frequency_analysis_end_to_end(digits_root, checkpoints, tmp_path, capsys):
    from tools.analysis.frequency_analysis import CSV_COLUMNS, main
    out = tmp_path / 'freq'
    res = main([DEMO_CONFIG, checkpoints['random'], DEMO_CONFIG, checkpoints['constant'],
                '--radii', '0,2,8', '--max-images', '32', '--labels', 'random', 'constant',
                '--out-dir', str(out), '--device', 'cpu', '--cfg-options',
                *_data_options(digits_root)])
    assert 'Wrote' in capsys.readouterr().out
    _assert_png(str(out / 'frequency_accuracy.png'))
    with open(out / 'frequency_accuracy.csv') as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert len(rows) == 2 * (1 + 2 * 3)  # 2 checkpoints x (unfiltered + 2 filters x 3 radii)
    assert {(r['label'], r['filter'], r['radius']) for r in rows} == {
        (lab, f, r) for lab in ('random', 'constant')
        for f, r in [('none', '')] + [(f, r) for f in ('low', 'high') for r in '028']}
    assert all(0.0 <= float(r['top1']) <= 100.0 and r['num_images'] == '32' for r in rows)
    # the constant model is right exactly on the images of its class, filtered or not
    labels = _val_labels(digits_root, 32)
    expected = 100.0 * labels.count(PREDICTED_CLASS) / 32
    assert all(float(r['top1']) == pytest.approx(expected, abs=1e-3)
               for r in rows if r['label'] == 'constant')
    assert res['radii'] == [0.0, 2.0, 8.0]


def test_fourier_heatmap_end_to_end(digits_root, checkpoints, tmp_path):
    out = tmp_path / 'heat'
    res = run_tool([sys.executable, 'tools/analysis/fourier_heatmap.py', DEMO_CONFIG,
                    checkpoints['constant'], '--size', '8', '--max-images', '32', '--eps',
                    '4.0', '--out-dir', str(out), '--device', 'cpu', '--cfg-options',
                    *_data_options(digits_root)], timeout=300)
    assert res.returncode == 0, res.stdout[-4000:]
    _assert_png(str(out / 'fourier_heatmap.png'))
    heat = np.load(out / 'fourier_heatmap.npy')
    assert heat.shape == (8, 8) and np.isfinite(heat).all()
    assert ((heat >= 0) & (heat <= 1)).all()
    meta = json.loads((out / 'fourier_heatmap.json').read_text())
    assert meta['num_images'] == 32 and meta['image_size'] == [32, 32]
    assert meta['freqs_x'] == list(range(-4, 4)) and meta['eps'] == 4.0
    # a constant prediction is as wrong under any perturbation as on clean images
    labels = _val_labels(digits_root, 32)
    clean_error = 1.0 - labels.count(PREDICTED_CLASS) / 32
    assert meta['clean_error'] == pytest.approx(clean_error)
    assert np.allclose(heat, clean_error)


def test_fourier_heatmap_of_a_random_model_is_point_symmetric(digits_root, checkpoints,
                                                              tmp_path):
    from tools.analysis.fourier_heatmap import compute_heatmap
    from tools.analysis.frequency_analysis import parse_cfg_options
    res = compute_heatmap(DEMO_CONFIG, checkpoints['random'], eps=8.0, size=5,
                          max_images=16, device='cpu',
                          cfg_options=parse_cfg_options(_data_options(digits_root)))
    heat = res['heatmap']
    assert heat.shape == (5, 5) and res['freqs_y'] == [-2, -1, 0, 1, 2]
    assert np.allclose(heat, heat[::-1, ::-1])  # U_ij is U of the opposite frequency


def _make_fake_imagenet_c(digits_root, root, corruptions=('gaussian_noise', 'fog'),
                          severities=(1, 2), per_class=2):
    """ImageNet-C layout from the demo's val images: <root>/<c>/<s>/<class>/<file>."""
    with open(osp.join(digits_root, 'meta', 'val.txt')) as f:
        items = [line.split() for line in f.read().split('\n') if line.strip()]
    chosen = {}
    for rel, label in items:
        chosen.setdefault(int(label), [])
        if len(chosen[int(label)]) < per_class:
            chosen[int(label)].append(rel)
    for c in corruptions:
        for s in severities:
            for label, rels in chosen.items():
                d = osp.join(root, c, str(s), f'digit_{label}')
                os.makedirs(d, exist_ok=True)
                for rel in rels:
                    shutil.copy(osp.join(digits_root, 'val', rel), d)
    return len(chosen)


def test_imagenet_c_through_tools_test(digits_root, checkpoints, tmp_path):
    root = tmp_path / 'imagenet-c'
    n_classes = _make_fake_imagenet_c(digits_root, str(root))
    assert n_classes == 10
    # the data set labels by sorted class folder and hands corruption/severity to the metric
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS
    import hat_mm  # noqa: F401
    init_default_scope('mmpretrain')
    ds = DATASETS.build(dict(type='ImageNetC', data_root=str(root), num_classes=10,
                             severities=(1, 2), pipeline=[dict(type='LoadImageFromFile'),
                                                          dict(type='PackInputs')]))
    assert len(ds) == 2 * 2 * 10 * 2
    sample = ds[len(ds) - 1]['data_samples']
    assert (sample.corruption, sample.severity, int(sample.gt_label)) == ('fog', 2, 9)
    with pytest.raises(ValueError, match='expected 1000'):
        DATASETS.build(dict(type='ImageNetC', data_root=str(root)))  # a class folder short

    config = tmp_path / 'demo_imagenet_c.py'
    config.write_text(f"""
_base_ = [{DEMO_CONFIG!r}]
test_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='ImageNetC', data_root={str(root)!r}, num_classes=10,
                 severities=(1, 2),
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
test_evaluator = dict(_delete_=True, type='ImageNetCMetric')
""")
    metrics_file = tmp_path / 'metrics.json'
    res = run_tool([sys.executable, 'tools/test.py', str(config), checkpoints['constant'],
                    '--work-dir', str(tmp_path / 'work'), '--out', str(metrics_file)],
                   timeout=300)
    assert res.returncode == 0, res.stdout[-4000:]
    m = json.loads(metrics_file.read_text())
    # 2 images per class in every (corruption, severity): the constant model gets 10%
    alex = {'gaussian_noise': 0.886428, 'fog': 0.819324}
    for c in alex:
        assert m[f'imagenet-c/top1_{c}'] == pytest.approx(10.0)
        assert m[f'imagenet-c/CE_{c}'] == pytest.approx(100 * 0.9 / alex[c])
    assert m['imagenet-c/mCE'] == pytest.approx(100 * (0.9 / 0.886428 + 0.9 / 0.819324) / 2)
    assert m['imagenet-c/top1_severity1'] == pytest.approx(10.0)
    assert 'gaussian_noise' in res.stdout and 'mCE is over 2 of the 15' in res.stdout
    assert math.isfinite(m['imagenet-c/top1'])


def test_frequency_analysis_checks_every_pair_before_evaluating(tmp_path, capsys):
    """Before: a swapped pair failed in mmengine ("Only py/yml/yaml/json type are supported
    now!"), and a missing second checkpoint only after the first was evaluated."""
    from tools.analysis.frequency_analysis import parse_args
    ckpt = tmp_path / 'a.pth'
    torch.save({'state_dict': {}}, ckpt)
    with pytest.raises(SystemExit):
        parse_args([str(ckpt), DEMO_CONFIG])
    assert 'a.pth is a checkpoint, not a config' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args([DEMO_CONFIG, str(ckpt), DEMO_CONFIG, str(tmp_path / 'b.pth')])
    assert 'b.pth does not exist' in capsys.readouterr().err
    assert len(parse_args([DEMO_CONFIG, str(ckpt)]).pairs) == 1
