"""hat_mm.mmcv_cuda_fallback: mmcv's RoIAlign and nms on CUDA tensors through torchvision.

No GPU here, so the CUDA route is taken on CPU tensors by replacing the device check
(``needs_fallback``): the same mmcv Python code (RoIAlign, roi_align, nms, batched_nms, mmdet's
BitmapMasks.crop_and_resize, a whole Cascade Mask R-CNN) then runs once on mmcv's CPU kernels
and once on torchvision's CPU kernels, and the two must agree exactly: torchvision's CPU and
CUDA kernels are the same algorithm, so this is the check of what runs on a GPU.
"""
import types

import numpy as np
import pytest
import torch

import hat_mm  # noqa: F401  installs the routing
from hat_mm import mmcv_cuda_fallback as fallback

ops = pytest.importorskip('mmcv.ops')
if fallback.mmcv_cpu_ops_ext() is None:
    pytest.skip('mmcv has CUDA ops (or none): the fallback is not used', allow_module_level=True)


@pytest.fixture
def via_torchvision(monkeypatch):
    """Call ``fn`` with every tensor taken for a CUDA tensor: the torchvision route."""

    def run(fn, *args, **kwargs):
        with monkeypatch.context() as m:
            m.setattr(fallback, 'needs_fallback', lambda tensor: True)
            return fn(*args, **kwargs)

    return run


@pytest.fixture
def served_calls(monkeypatch):
    """The names of the torchvision-route functions called, in order."""
    calls = []
    for name, fn in list(fallback.SERVED.items()):
        def spy(*args, _name=name, _fn=fn, **kwargs):
            calls.append(_name)
            return _fn(*args, **kwargs)
        monkeypatch.setitem(fallback.SERVED, name, spy)
    return calls


def random_rois(n, batch, height, width, scale, gen, outside=0.3):
    """(n, 5) RoIs in image coordinates (the feature map is ``scale`` of it); a share of
    them reaching past the image on any side."""
    h, w = height / scale, width / scale
    x1 = torch.rand(n, generator=gen) * w * (1 + 2 * outside) - w * outside
    y1 = torch.rand(n, generator=gen) * h * (1 + 2 * outside) - h * outside
    bw = torch.rand(n, generator=gen) * w * 0.6
    bh = torch.rand(n, generator=gen) * h * 0.6
    idx = torch.randint(0, batch, (n,), generator=gen).float()
    return torch.stack([idx, x1, y1, x1 + bw, y1 + bh], 1)


def edge_rois(height, width, scale):
    """Boxes at the edges of RoIAlign's sampling rules (image coordinates)."""
    h, w = height / scale, width / scale
    return torch.tensor([
        [0, 0, 0, w, h],  # the whole map
        [1, -w, -h, -w / 2, -h / 2],  # entirely outside (above-left)
        [0, w + 2 / scale, h + 2 / scale, 2 * w, 2 * h],  # entirely outside (below-right)
        [1, -5, -5, w + 5, h + 5],  # larger than the map
        [0, 3, 4, 3, 4],  # zero size
        [1, 2.2, 3.3, 2.6, 3.4],  # under a pixel
        [0, w - 0.5, h - 0.5, w + 3, h + 3],  # the last row/column, clamped
        [1, -0.99 / scale, 0, 2, 2],  # just inside the -1 limit of the feature map
        [0, 1.25, 1.75, 9.5, 6.25],  # exact binary fractions
    ], dtype=torch.float32)


def roi_align_and_grad(fn, x, rois, weight):
    x = x.detach().requires_grad_()
    out = fn(x, rois)
    grad, = torch.autograd.grad((out * weight).sum(), x)
    return out.detach(), grad


# --------------------------------------------------------------------------------------
# RoIAlign / roi_align
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [0, 1, 2])
@pytest.mark.parametrize('scale', [1.0, 0.25, 1 / 3])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_roi_align_equals_mmcv(aligned, sampling_ratio, scale, dtype, via_torchvision):
    gen = torch.Generator().manual_seed(int(aligned) * 100 + sampling_ratio * 10 +
                                        int(1 / scale))
    x = torch.randn(2, 5, 13, 17, generator=gen, dtype=dtype)
    rois = torch.cat([random_rois(40, 2, 13, 17, scale, gen), edge_rois(13, 17, scale)])
    rois = rois.to(dtype)
    layer = ops.RoIAlign((7, 5), scale, sampling_ratio, aligned=aligned)
    weight = torch.randn(len(rois), 5, 7, 5, generator=gen, dtype=dtype)
    out, grad = roi_align_and_grad(layer, x, rois, weight)
    tv_out, tv_grad = via_torchvision(roi_align_and_grad, layer, x, rois, weight)
    assert out.abs().sum() > 0 and grad.abs().sum() > 0
    assert torch.equal(tv_out, out)
    assert torch.equal(tv_grad, grad)
    # every edge box was computed (entirely-outside ones give zeros in both)
    assert out[-8:-6].abs().sum() == 0 and out[-9].abs().sum() > 0


def test_roi_align_function_no_boxes_and_noncontiguous_grad(via_torchvision):
    """mmcv.ops.roi_align (mmdet's BitmapMasks import) with no boxes, and a backward whose
    incoming gradient is not contiguous (mmcv makes it so)."""
    x = torch.randn(2, 3, 8, 8)  # edge_rois use batch indices 0 and 1
    for rois in (torch.zeros(0, 5), edge_rois(8, 8, 1.0)):
        def fn(inp, r):
            return ops.roi_align(inp, r, (4, 4), 1.0, 0, 'avg', True).transpose(2, 3)

        weight = torch.randn(len(rois), 3, 4, 4)
        out, grad = roi_align_and_grad(fn, x, rois, weight)
        tv_out, tv_grad = via_torchvision(roi_align_and_grad, fn, x, rois, weight)
        assert out.shape == (len(rois), 3, 4, 4)
        assert torch.equal(tv_out, out) and torch.equal(tv_grad, grad)


def test_roi_align_half_precision_is_computed_in_float32(via_torchvision):
    """float16/bfloat16 in: mmcv's float32 result on the same (rounded) values, rounded once."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 12, 12, generator=gen)
    rois = random_rois(20, 2, 12, 12, 0.5, gen)
    weight = torch.randn(20, 4, 7, 7, generator=gen)
    layer = ops.RoIAlign(7, 0.5, 0, aligned=True)
    for dtype in (torch.float16, torch.bfloat16):
        x_, rois_, weight_ = x.to(dtype), rois.to(dtype), weight.to(dtype)
        ref, ref_grad = roi_align_and_grad(layer, x_.float(), rois_.float(), weight_.float())
        out, grad = via_torchvision(roi_align_and_grad, layer, x_, rois_, weight_)
        assert out.dtype == grad.dtype == dtype
        assert torch.equal(out, ref.to(dtype)) and torch.equal(grad, ref_grad.to(dtype))


def test_bitmap_masks_crop_and_resize_equals_mmcv(via_torchvision):
    """mmdet's mask targets (Cascade Mask R-CNN's mask head) through the torchvision route."""
    from mmdet.structures.mask import BitmapMasks
    rng = np.random.default_rng(0)
    masks = BitmapMasks((rng.random((6, 40, 50)) > 0.5).astype(np.uint8), 40, 50)
    boxes = np.array([[0, 0, 50, 40], [3.5, 2.2, 20.1, 30.7], [-5, -5, 10, 10],
                      [45, 35, 60, 48], [10, 10, 10.4, 10.3], [7, 1, 44, 39]], np.float32)
    inds = np.array([0, 1, 2, 3, 4, 5])
    for binarize in (True, False):
        ref = masks.crop_and_resize(boxes, (28, 28), inds, device='cpu', binarize=binarize)
        out = via_torchvision(masks.crop_and_resize, boxes, (28, 28), inds, device='cpu',
                              binarize=binarize)
        assert np.array_equal(out.masks, ref.masks) and ref.masks.any()


def test_max_pool_mode_on_cuda_names_the_fix(via_torchvision):
    layer = ops.RoIAlign(2, 1.0, 2, pool_mode='max')
    x, rois = torch.randn(1, 1, 6, 6), torch.tensor([[0., 0., 0., 4., 4.]])
    assert layer(x, rois).shape == (1, 1, 2, 2)  # mmcv's CPU kernel has max pooling
    with pytest.raises(RuntimeError, match=r"pool_mode='max'.*HAT_MM_MMCV_CUDA=1 bash "
                                           r'tools/setup_env\.sh'):
        via_torchvision(layer, x, rois)


# --------------------------------------------------------------------------------------
# nms / batched_nms
# --------------------------------------------------------------------------------------
def random_boxes(n, gen, size=100.0, tied_scores=None, integer=False):
    xy = torch.rand(n, 2, generator=gen) * size
    wh = torch.rand(n, 2, generator=gen) * size / 3
    boxes = torch.cat([xy, xy + wh], 1)
    if integer:
        boxes = boxes.round()
    if tied_scores:  # few distinct values: many exact ties
        scores = torch.randint(0, tied_scores, (n,), generator=gen).float() / tied_scores
    else:
        scores = torch.rand(n, generator=gen)
    return boxes, scores


def stable_order_nms(boxes, scores, iou_threshold):
    """torchvision nms with ties broken by index (what a stable sort would give)."""
    from torchvision.ops import nms
    order = torch.sort(scores, descending=True, stable=True)[1]
    ranks = torch.arange(len(order), 0, -1, dtype=torch.float32)
    return order[nms(boxes[order], ranks, iou_threshold)]


@pytest.mark.parametrize('n', [1, 2, 7, 64, 300, 3000])
@pytest.mark.parametrize('iou_threshold', [0.3, 0.5, 0.7])
@pytest.mark.parametrize('tied', [None, 3])
def test_nms_equals_mmcv(n, iou_threshold, tied, via_torchvision):
    gen = torch.Generator().manual_seed(n)
    boxes, scores = random_boxes(n, gen, tied_scores=tied)
    dets, keep = ops.nms(boxes, scores, iou_threshold)
    tv_dets, tv_keep = via_torchvision(ops.nms, boxes, scores, iou_threshold)
    assert tv_keep.dtype == torch.long
    assert torch.equal(tv_keep, keep) and torch.equal(tv_dets, dets)  # same boxes, same order


def test_nms_ties_follow_mmcv_not_the_index_order(via_torchvision):
    """With exact ties, mmcv keeps whatever torch's unstable sort puts first; the fallback
    keeps the same boxes (a stable, index-order tie break would keep others)."""
    differs = 0
    for seed in range(10):
        gen = torch.Generator().manual_seed(seed)
        boxes, scores = random_boxes(500, gen, size=60.0, tied_scores=2)
        keep = ops.nms(boxes, scores, 0.5)[1]
        assert torch.equal(via_torchvision(ops.nms, boxes, scores, 0.5)[1], keep)
        differs += not torch.equal(stable_order_nms(boxes, scores, 0.5), keep)
    assert differs  # the tie break matters on these inputs

    # identical boxes with identical scores: exactly one survives, the same one
    boxes = torch.tensor([[0., 0., 10., 10.]] * 40)
    scores = torch.ones(40)
    keep = ops.nms(boxes, scores, 0.5)[1]
    assert len(keep) == 1 and torch.equal(via_torchvision(ops.nms, boxes, scores, 0.5)[1], keep)


def test_nms_threshold_rounding_and_options(via_torchvision):
    from torchvision.ops import nms as tv_nms
    # IoU 2/4 = 0.5 is not above 0.5 (the test is strict); IoU 3/10 rounds to float32(0.3),
    # which is above 0.3 in double precision but not above mmcv's float32 threshold
    boxes = torch.tensor([[0., 0., 4., 1.], [0., 0., 2., 1.],
                          [10., 10., 20., 11.], [10., 10., 13., 11.]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    assert ops.nms(boxes, scores, 0.5)[1].tolist() == [0, 1, 2, 3]
    assert ops.nms(boxes, scores, 0.3)[1].tolist() == [0, 2, 3]
    assert tv_nms(boxes, scores, 0.3).tolist() == [0, 2]  # unrounded threshold
    for thr in (0.5, 0.3, 0.2999999, 0.7):
        keep = ops.nms(boxes, scores, thr)[1]
        assert torch.equal(via_torchvision(ops.nms, boxes, scores, thr)[1], keep)
    # score_threshold / max_num of mmcv.ops.nms, numpy in and out, no boxes
    gen = torch.Generator().manual_seed(5)
    b, s = random_boxes(200, gen, tied_scores=4)
    for kwargs in (dict(score_threshold=0.3), dict(max_num=7),
                   dict(score_threshold=0.5, max_num=3)):
        ref = ops.nms(b, s, 0.5, **kwargs)
        out = via_torchvision(ops.nms, b, s, 0.5, **kwargs)
        assert torch.equal(out[1], ref[1]) and torch.equal(out[0], ref[0])
    ref = ops.nms(b.numpy(), s.numpy(), 0.5)
    out = via_torchvision(ops.nms, b.numpy(), s.numpy(), 0.5)
    assert isinstance(out[1], np.ndarray) and np.array_equal(out[1], ref[1])
    empty = via_torchvision(ops.nms, torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty[1].dtype == torch.long and empty[1].shape == (0,) and empty[0].shape == (0, 5)


def test_nms_offset_one_on_integer_boxes(via_torchvision):
    gen = torch.Generator().manual_seed(2)
    boxes, scores = random_boxes(400, gen, integer=True, tied_scores=5)
    for thr in (0.3, 0.5):
        keep = ops.nms(boxes, scores, thr, offset=1)[1]
        assert not torch.equal(keep, ops.nms(boxes, scores, thr)[1])  # offset matters
        assert torch.equal(via_torchvision(ops.nms, boxes, scores, thr, offset=1)[1], keep)


@pytest.mark.parametrize('split_thr', [10000, 100])
@pytest.mark.parametrize('class_agnostic', [False, True])
def test_batched_nms_many_classes_equals_mmcv(split_thr, class_agnostic, via_torchvision):
    gen = torch.Generator().manual_seed(split_thr)
    boxes, scores = random_boxes(2000, gen, size=200.0, tied_scores=7)
    labels = torch.randint(0, 80, (2000,), generator=gen)
    cfg = dict(type='nms', iou_threshold=0.5, split_thr=split_thr)
    dets, keep = ops.batched_nms(boxes, scores, labels, cfg, class_agnostic)
    tv_dets, tv_keep = via_torchvision(ops.batched_nms, boxes, scores, labels, cfg,
                                       class_agnostic)
    assert torch.equal(tv_keep, keep) and torch.equal(tv_dets, dets)
    assert len(labels[keep].unique()) > (1 if class_agnostic else 70)
    # the result is NMS per class: no two kept boxes of one class overlap above 0.5
    if not class_agnostic:
        from torchvision.ops import box_iou
        same = labels[keep][:, None] == labels[keep][None]
        iou = box_iou(boxes[keep], boxes[keep]).fill_diagonal_(0)
        assert not (iou[same] > 0.5).any()


# --------------------------------------------------------------------------------------
# routing, errors, install
# --------------------------------------------------------------------------------------
def test_cpu_tensors_use_mmcv_and_cuda_tensors_use_torchvision(monkeypatch, served_calls):
    calls = served_calls
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    rois = torch.tensor([[0., 1., 1., 4., 5.]])
    boxes, scores = torch.tensor([[0., 0., 2., 2.], [0., 0., 2., 2.1]]), torch.tensor([.5, .6])

    def run_all():
        ops.RoIAlign(2, 1.0, 2)(x, rois).sum().backward()
        ops.batched_nms(boxes, scores, torch.tensor([0, 1]), dict(iou_threshold=0.5))

    run_all()
    assert calls == []  # CPU tensors: mmcv's own kernels
    monkeypatch.setattr(fallback, 'needs_fallback', lambda tensor: True)
    run_all()
    assert calls == ['roi_align_forward', 'roi_align_backward', 'nms']
    # the real check: CPU and meta tensors are not CUDA tensors
    monkeypatch.undo()
    assert not fallback.needs_fallback(torch.zeros(1))
    assert not fallback.needs_fallback(torch.zeros(1, device='meta'))


def test_other_mmcv_op_on_cuda_names_op_and_fix(monkeypatch):
    logits, labels = torch.randn(4, 3), torch.randint(0, 3, (4,))
    # on CPU tensors the call reaches mmcv unchanged (which has no CPU focal loss kernel)
    with pytest.raises(RuntimeError, match='sigmoid_focal_loss_forward_impl: implementation '
                                           'for device cpu not found'):
        ops.sigmoid_focal_loss(logits, labels, 2.0, 0.25)
    monkeypatch.setattr(fallback, 'needs_fallback', lambda tensor: True)
    with pytest.raises(RuntimeError) as err:
        ops.sigmoid_focal_loss(logits, labels, 2.0, 0.25)
    message = str(err.value)
    assert 'mmcv op `sigmoid_focal_loss_forward` got a CUDA tensor' in message
    assert 'built with CPU ops only' in message and fallback.FULL_BUILD_FIX in message
    assert fallback.FULL_BUILD_FIX == 'HAT_MM_MMCV_CUDA=1 bash tools/setup_env.sh'


def _fake_ext():
    """A stand-in for mmcv._ext: its ops fail on CUDA tensors as mmcv's dispatcher does."""
    ext = types.ModuleType('fake_ext')
    calls = []

    def make(name):
        def op(*args, **kwargs):
            calls.append(name)
            if any(fallback.needs_fallback(t) for t in fallback._tensors(args, kwargs)):
                raise RuntimeError(f'{name}_impl: implementation for device cuda:0 not found.')
            return name
        op.__name__ = name
        return op

    for name in ('nms', 'roi_pool_forward', 'get_compiling_cuda_version'):
        setattr(ext, name, make(name))
    ext.SomeClass, ext._private = type('SomeClass', (), {}), make('_private')
    return ext, calls


def test_install_routes_every_op_once(monkeypatch):
    ext, calls = _fake_ext()
    originals = {k: getattr(ext, k) for k in ('nms', 'roi_pool_forward')}
    assert fallback.install(ext) is True
    wrapped = {k: getattr(ext, k) for k in originals}
    assert fallback.install(ext) is True  # idempotent: not wrapped twice
    assert {k: getattr(ext, k) for k in originals} == wrapped
    wrapped = ext.get_compiling_cuda_version.__wrapped__
    assert getattr(ext, fallback._INSTALLED) == dict(originals,
                                                     get_compiling_cuda_version=wrapped)
    assert ext._private.__name__ == '_private' and isinstance(ext.SomeClass, type)
    assert ext.roi_pool_forward.__name__ == 'roi_pool_forward'
    assert ext.get_compiling_cuda_version() == 'get_compiling_cuda_version'  # no tensors

    x = torch.zeros(2, 4)
    assert ext.roi_pool_forward(x, rois=[x]) == 'roi_pool_forward' and \
        calls[-1] == 'roi_pool_forward'  # CPU: the original
    monkeypatch.setattr(fallback, 'needs_fallback', lambda tensor: True)
    calls.clear()
    with pytest.raises(RuntimeError, match='mmcv op `roi_pool_forward` got a CUDA tensor'):
        ext.roi_pool_forward(torch.zeros(1), rois=[x])
    with pytest.raises(RuntimeError, match='roi_pool_forward'):
        ext.roi_pool_forward(1.0, rois=[x])  # a tensor inside a list is found too
    keep = ext.nms(torch.tensor([[0., 0., 1., 1.]]), torch.ones(1), iou_threshold=0.5, offset=0)
    assert keep.tolist() == [0] and calls == []  # torchvision, not the dispatcher error
    # mmcv's own extension module is routed on import hat_mm, once
    ext_module = fallback.mmcv_cpu_ops_ext()
    assert hasattr(ext_module, fallback._INSTALLED) and fallback.install() is True
    assert ext_module.nms.__wrapped__ is getattr(ext_module, fallback._INSTALLED)['nms']


# --------------------------------------------------------------------------------------
# a whole Cascade Mask R-CNN
# --------------------------------------------------------------------------------------
def test_cascade_mask_rcnn_equal_through_torchvision(via_torchvision, served_calls):
    """Training losses, gradients and test-time detections of Swin-T Cascade Mask R-CNN are
    the same on the torchvision route (RPN batched_nms, box/mask RoIAlign, mask targets,
    test NMS) as on mmcv's kernels."""
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.structures import InstanceData
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks

    from .test_detection_transfer import build_detector, det_config

    cfg = Config.fromfile(det_config('t'))
    model = cfg.model  # the real detector, narrowed (CPU time): one block per stage, 32 wide
    model.backbone.update(arch=dict(embed_dims=32, depths=[1, 1, 1, 1], num_heads=[1] * 4),
                          init_cfg=None)
    model.neck.update(in_channels=[32, 64, 128, 256], out_channels=32)
    model.rpn_head.update(in_channels=32, feat_channels=32)
    model.roi_head.bbox_roi_extractor.out_channels = 32
    model.roi_head.mask_roi_extractor.out_channels = 32
    for head in model.roi_head.bbox_head:
        head.update(in_channels=32, conv_out_channels=32, fc_out_channels=64)
    model.roi_head.mask_head.update(in_channels=32, conv_out_channels=32)
    cfg.model.train_cfg.rpn_proposal.max_per_img = 64
    for stage in cfg.model.train_cfg.rcnn:
        stage.sampler.num = 32
    cfg.model.test_cfg.rpn.max_per_img = 32
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    torch.manual_seed(0)
    model = revert_sync_batchnorm(build_detector(cfg))

    rng = np.random.default_rng(0)
    inputs, samples = [], []
    for _ in range(2):
        h, w = 96, 128
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             scale_factor=(1.0, 1.0)))
        xy = rng.uniform(0, 60, (3, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(15, 40, (3, 2))], 1).clip(0, [w, h] * 2)
        masks = np.zeros((3, h, w), np.uint8)
        for m, (x1, y1, x2, y2) in zip(masks, boxes.astype(int)):
            m[y1:y2, x1:x2] = 1
        sample.gt_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32),
                                           labels=torch.tensor([1, 5, 72]),
                                           masks=BitmapMasks(masks, h, w))
        samples.append(sample)
        inputs.append(torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8)))

    initial = {k: v.clone() for k, v in model.state_dict().items()}

    def train_step():
        model.load_state_dict(initial)  # BN running statistics move in train mode
        torch.manual_seed(1)  # RoI sampling and drop path
        model.train()
        model.zero_grad()
        data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)
        losses = model.loss(data['inputs'], data['data_samples'])
        model.parse_losses(losses)[0].backward()
        losses = {k: torch.stack(v) if isinstance(v, list) else v for k, v in losses.items()}
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.eval()
        with torch.no_grad():
            data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples), False)
            preds = model.predict(data['inputs'], data['data_samples'])
        return {k: v.detach() for k, v in losses.items()}, grads, preds

    losses, grads, preds = train_step()
    assert served_calls == []
    tv_losses, tv_grads, tv_preds = via_torchvision(train_step)
    # RPN and test NMS, box and mask RoIAlign (and mask targets), their backward
    assert {name: served_calls.count(name) > 2 for name in fallback.SERVED} == \
        dict(roi_align_forward=True, roi_align_backward=True, nms=True)
    assert set(losses) >= {'loss_rpn_cls', 's0.loss_bbox', 's2.loss_mask'}
    for key, value in losses.items():
        assert torch.equal(tv_losses[key], value), key
    assert grads.keys() == tv_grads.keys() and 'roi_head.mask_head.2.conv_logits.weight' in grads
    for name, grad in grads.items():
        assert torch.equal(tv_grads[name], grad), name
    for pred, tv_pred in zip(preds, tv_preds):
        assert len(pred.pred_instances) > 0
        for key in ('bboxes', 'scores', 'labels', 'masks'):
            assert torch.equal(tv_pred.pred_instances[key], pred.pred_instances[key]), key
