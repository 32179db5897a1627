"""Fast paths compute the same HAT update as the plain path (CPU, fp32)."""
import copy
import logging
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.optim import OptimWrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import hat_mm  # noqa: F401
from hat_mm.engine import apply_hat
from hat_mm.models.fused_window_attention import SDPAWindowMSA

from .helpers import NUM_CLASSES, random_batch
from .runner_utils import DEMO_CONFIG


def _tiny_swin(fused, **fast_paths):
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='HATImageClassifier', fused_window_attention=fused, hat=dict(adv_iters=3),
        **fast_paths,
        backbone=dict(type='SwinTransformer', img_size=16, patch_size=2, window_size=4,
                      arch=dict(embed_dims=16, depths=[2, 2], num_heads=[2, 4]),
                      drop_path_rate=0.0, out_indices=(1, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=32,
                  loss=dict(type='CrossEntropyLoss')),
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=NUM_CLASSES,
                               mean=[127.5] * 3, std=[60.0] * 3)))
    for p in model.parameters():  # non-trivial biases and attention tables
        torch.nn.init.normal_(p, std=0.2)
    return model


def _tiny_vit(**fast_paths):
    torch.manual_seed(0)
    return MODELS.build(dict(
        type='HATImageClassifier', hat=dict(adv_iters=3), **fast_paths,
        backbone=dict(type='VisionTransformer', img_size=16, patch_size=4,
                      arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                feedforward_channels=64),
                      drop_rate=0.0, drop_path_rate=0.0),
        neck=None,
        head=dict(type='VisionTransformerClsHead', num_classes=NUM_CLASSES, in_channels=32,
                  loss=dict(type='CrossEntropyLoss')),
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=NUM_CLASSES,
                               mean=[127.5] * 3, std=[60.0] * 3)))


def _hat_updates(model, steps=1, batch=None, after_step=None, **batch_kwargs):
    """Parameter changes of ``steps`` HAT iterations (SGD), one per step. Step ``i`` runs on
    ``batch(i)`` (default ``random_batch(seed=i, **batch_kwargs)``) under the global seed
    ``100 + i``, so two models draw the same random numbers; ``after_step()`` after each."""
    model.train()
    model.set_hat_phase(True)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.5))
    updates = []
    for i in range(steps):
        before = copy.deepcopy(model.state_dict())
        data = batch(i) if batch is not None else random_batch(seed=i, **batch_kwargs)
        torch.manual_seed(100 + i)  # e.g. VOLO's MixToken box, drop-path
        log_vars = model.train_step(data, wrapper)
        assert 'loss_kl_adv' in log_vars
        updates.append({k: v - before[k] for k, v in model.state_dict().items()})
        if after_step is not None:
            after_step()
    return updates


def _counting_aot_eager(graphs):
    """A ``torch.compile`` backend that appends each graph to ``graphs`` and runs it through
    ``aot_eager`` (the compiled path, with eager's exact numbers)."""
    def backend(gm, example_inputs):
        graphs.append(gm)
        return torch._dynamo.lookup_backend('aot_eager')(gm, example_inputs)
    return backend


def _assert_same_updates(ours, reference, rtol=1e-4, atol=1e-6):
    assert max(v.abs().max() for v in reference[0].values()) > 1e-3  # the step did something
    for got, want in zip(ours, reference):
        assert got.keys() == want.keys()
        for k, v in want.items():
            torch.testing.assert_close(got[k], v, rtol=rtol, atol=atol, msg=k)


def test_compile_gives_the_same_hat_update_and_does_not_recompile_every_step():
    graphs, counts = [], []
    torch._dynamo.reset()
    eager = _tiny_vit()
    compiled = _tiny_vit(compile=dict(backend=_counting_aot_eager(graphs)))
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints unchanged
    reference = _hat_updates(eager, steps=4)
    ours = _hat_updates(compiled, steps=4, after_step=lambda: counts.append(len(graphs)))
    _assert_same_updates(ours, reference)
    # backbone: clean (no_grad), passes 1..K-1 (input grad), last pass; head: two grad modes.
    # One graph each -- a graph break (e.g. on numpy DropPath probabilities) adds more.
    assert counts[0] == 5, counts
    assert counts == [counts[0]] * 4, f'recompiled in later steps: {counts}'
    # after the adversarial phase (K = 1) the same graphs serve
    compiled.set_hat_phase(False)
    compiled.train_step(random_batch(seed=9),
                        OptimWrapper(torch.optim.SGD(compiled.parameters(), lr=0.5)))
    assert len(graphs) == counts[0]
    torch._dynamo.reset()


def test_compile_for_other_devices_runs_eager_with_one_log_line():
    """``compile=dict(devices=['cuda'])`` on CPU: nothing compiled, one line said, the plain
    update; ``devices=['cpu']`` compiles at the first step."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_instance('test_compile_devices', log_level='INFO')
    said = []

    class Collect(logging.Handler):
        def emit(self, record):
            said.append(record.getMessage())

    handler = Collect()
    logger.addHandler(handler)
    try:
        gpu_only = _tiny_vit(compile=dict(devices=['cuda'], mode='max-autotune-no-cudagraphs'))
        assert gpu_only._hat_compile_pending is not None and not gpu_only.hat_compiled
        updates = _hat_updates(gpu_only, steps=2)
        gpu_only.eval()
        gpu_only.val_step(random_batch(seed=5))
    finally:
        logger.removeHandler(handler)
    lines = [m for m in said if 'model.compile' in m]
    assert lines == ["model.compile is set for ['cuda']: this run is on cpu, so the model "
                     'runs eager (not compiled).']
    assert not gpu_only.hat_compiled
    assert all(getattr(m, '_compiled_call_impl', None) is None
               for m in gpu_only.hat_compile_modules())
    _assert_same_updates(updates, _hat_updates(_tiny_vit(), steps=2), rtol=0, atol=0)

    torch._dynamo.reset()
    said.clear()
    cpu = _tiny_vit(compile=dict(devices='cpu', backend='aot_eager'))
    assert not cpu.hat_compiled  # decided at the first step
    logger.addHandler(handler)
    try:
        _hat_updates(cpu, steps=1)
    finally:
        logger.removeHandler(handler)
    # a run that compiles says so (its first iteration is the slow one)
    assert [m for m in said if 'model.compile' in m] == [
        "model.compile: torch.compile(backend='aot_eager') of VisionTransformer, "
        'VisionTransformerClsHead; the first iteration compiles (minutes on a GPU), the ones '
        'after it do not.']
    assert cpu.hat_compiled and cpu._hat_compile_pending is None
    assert all(m._compiled_call_impl is not None for m in cpu.hat_compile_modules())
    torch._dynamo.reset()


def test_channels_last_gives_the_same_hat_update():
    plain, fast = _tiny_vit(), _tiny_vit(channels_last=True)
    conv = fast.backbone.patch_embed.projection.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    seen = []  # the training inputs, clean and perturbed, are channels-last too
    fast.backbone.register_forward_pre_hook(lambda m, args: seen.append(
        args[0].is_contiguous(memory_format=torch.channels_last)
        and not args[0].is_contiguous()))
    _assert_same_updates(_hat_updates(fast, steps=2), _hat_updates(plain, steps=2))
    assert len(seen) == 8 and all(seen)


@pytest.mark.parametrize('value, message', [
    (dict(mode='default', bakend='inductor'), "unknown torch.compile argument(s) ['bakend']"),
    (dict(mode='fastest'), "model.compile.mode='fastest' is not a torch.compile mode"),
    # CUDA graphs, however asked for (they do not hold over the K passes' gradients)
    (dict(mode='reduce-overhead'), "model.compile (mode='reduce-overhead') turns on CUDA graphs"),
    (dict(mode='max-autotune', devices=['cuda']), "(mode='max-autotune') turns on CUDA graphs"),
    (dict(backend='cudagraphs'), "(backend='cudagraphs') turns on CUDA graphs"),
    (dict(options={'triton.cudagraphs': True}), 'turns on CUDA graphs'),
    ('yes', 'expected True/False or a dict'),
    (dict(devices=['gpu']), "model.compile.devices=['gpu']: give device types"),
    (dict(devices=[]), 'model.compile.devices=[]: give device types'),
])
def test_bad_compile_option_is_refused_when_the_model_is_built(value, message):
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        _tiny_vit(compile=value)


def test_compile_modes_without_cuda_graphs_are_accepted():
    for value in (dict(mode='max-autotune-no-cudagraphs'), dict(mode='default'),
                  dict(mode='max-autotune', options={'triton.cudagraphs': False})):
        model = _tiny_vit(compile=dict(value, devices=['cuda']))
        assert model._hat_compile_pending[0] == value


def test_top_level_compile_moves_into_the_model():
    """mmengine's ``compile=True`` would compile the whole train_step; HATRunner passes it to
    the model instead, which compiles the modules the K passes call."""
    raw = Config.fromfile(DEMO_CONFIG)
    raw.compile = dict(mode='max-autotune-no-cudagraphs')
    cfg = apply_hat(raw)
    assert 'compile' not in cfg and cfg.model.compile == dict(mode='max-autotune-no-cudagraphs')
    raw.model.compile = dict(mode='default')
    with pytest.raises(ValueError, match='disagree'):
        apply_hat(raw)


def test_fused_window_attention_gives_the_same_hat_update():
    plain, fused = _tiny_swin(False), _tiny_swin(True)
    fused.load_state_dict(plain.state_dict())  # same keys: checkpoints interchangeable
    n_fused = sum(isinstance(m, SDPAWindowMSA) for m in fused.modules())
    assert n_fused == 4 and not any(isinstance(m, SDPAWindowMSA) for m in plain.modules())
    x = plain.data_preprocessor(random_batch(), True)['inputs']
    plain.eval(), fused.eval()
    torch.testing.assert_close(fused(x, mode='tensor'), plain(x, mode='tensor'),
                               rtol=1e-5, atol=1e-6)
    results = []
    for model in (plain, fused):
        model.train()
        model.set_hat_phase(True)
        before = copy.deepcopy(model.state_dict())
        log_vars = model.train_step(random_batch(), OptimWrapper(
            torch.optim.SGD(model.parameters(), lr=0.5)))
        assert 'loss_kl_adv' in log_vars
        results.append({k: v - before[k] for k, v in model.state_dict().items()})
    assert max(v.abs().max() for v in results[0].values()) > 1e-3  # the step did something
    for k, v in results[0].items():
        torch.testing.assert_close(results[1][k], v, rtol=1e-4, atol=1e-6, msg=k)


def test_fused_window_attention_qualifies_for_the_fused_cuda_kernels(monkeypatch):
    """On CUDA, ``scaled_dot_product_attention`` runs the memory-efficient kernel only if ``q``,
    ``k``, ``v`` and ``attn_mask`` have stride 1 in their last dimension (torch's
    ``check_last_dim_stride_equals_1_dense``); otherwise it silently takes the math path, in
    fp32 under autocast. The CPU kernel does not check the mask's stride, so the calls
    themselves are inspected: every window attention of a HAT step, shifted windows and not,
    must qualify, with cuDNN's kernel (slower on these windows) switched off around the call
    only."""
    import hat_mm.models.fused_window_attention as fused_module
    real_sdpa = fused_module.F.scaled_dot_product_attention
    calls = []

    def spy(q, k, v, attn_mask=None, **kwargs):
        calls.append(dict(heads=q.shape[1], strides=[t.stride(-1) for t in (q, k, v)],
                          mask_stride=attn_mask.stride(-1), kernels=(
                              torch.backends.cuda.mem_efficient_sdp_enabled(),
                              torch.backends.cuda.flash_sdp_enabled(),  # the CPU's kernel
                              torch.backends.cuda.math_sdp_enabled(),
                              torch.backends.cuda.cudnn_sdp_enabled())))
        return real_sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(fused_module.F, 'scaled_dot_product_attention', spy)
    model = _tiny_swin(True)
    model.train()
    model.set_hat_phase(True)
    model.train_step(random_batch(), OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.5)))
    # 4 blocks x (clean forward + K = 3 passes); stage 1: 2 heads, shifted: 4 windows x 2 heads
    assert len(calls) == 16 and {2, 8} <= {c['heads'] for c in calls}
    assert all(c['strides'] == [1, 1, 1] for c in calls), calls
    assert all(c['mask_stride'] == 1 for c in calls), calls
    assert all(c['kernels'] == (True, True, True, False) for c in calls), calls
    assert torch.backends.cuda.cudnn_sdp_enabled()  # switched back on after each call


def test_compiled_fused_window_attention_gives_the_same_hat_update():
    """The fused window attention (its kernel choice included) traces into the compiled
    graphs without a break, compiles once, and gives the eager update."""
    graphs, counts = [], []
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    eager = _tiny_swin(True)
    compiled = _tiny_swin(True, compile=dict(backend=_counting_aot_eager(graphs)))
    reference = _hat_updates(eager, steps=2)
    ours = _hat_updates(compiled, steps=2, after_step=lambda: counts.append(len(graphs)))
    _assert_same_updates(ours, reference)
    assert counts[0] > 0 and counts[1] == counts[0], counts
    assert not torch._dynamo.utils.counters['graph_break'], \
        dict(torch._dynamo.utils.counters['graph_break'])
    torch._dynamo.reset()


@pytest.mark.parametrize('loss', [
    dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),  # Swin / DeiT recipes
    dict(type='CrossEntropyLoss', use_soft=True),
])
def test_no_host_sync_inside_the_k_loop(loss, monkeypatch):
    """On a GPU, reading a tensor's value on the host (``.item()``, ``bool()``, ``.cpu()``)
    waits for the device. The K passes must not: with the recipes' soft targets (mixup /
    cutmix) none of those is called between the first forward and the last backward."""
    import hat_mm.models.hat_classifier as hat_classifier

    from .helpers import tiny_vit_classifier

    model = tiny_vit_classifier(hat=dict(adv_iters=3), loss=loss)
    model.set_hat_phase(True)
    calls = []
    real_hat_backward = hat_classifier.hat_backward

    def guarded_hat_backward(*args, **kwargs):
        def record(name, real):
            def method(self, *a, **k):
                calls.append(name)
                return real(self, *a, **k)
            return method

        with pytest.MonkeyPatch.context() as patch:
            for name in ('item', '__bool__', 'tolist', '__int__', '__float__', 'cpu', 'numpy'):
                patch.setattr(torch.Tensor, name, record(name, getattr(torch.Tensor, name)))
            return real_hat_backward(*args, **kwargs)

    monkeypatch.setattr(hat_classifier, 'hat_backward', guarded_hat_backward)
    log_vars = model.train_step(random_batch(soft=True), OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1)))
    assert 'loss_kl_adv' in log_vars
    assert calls == []


@pytest.mark.parametrize('family', ['image', 'timm', 'volo'])
def test_compiled_modules_are_those_the_training_forward_runs(family):
    """``compile`` compiles ``hat_compile_modules()``: each must run in the train-mode
    forward, and together they must hold the weights (parameters owned directly by the
    wrapped timm model, such as VOLO's position embedding, may be outside them)."""
    torch.manual_seed(0)
    if family == 'image':
        model, size = _tiny_vit(), 16
    elif family == 'timm':
        model, size = MODELS.build(dict(type='HATTimmClassifier', model_name='resnet18',
                                        num_classes=NUM_CLASSES)), 32
    else:
        model, size = MODELS.build(dict(
            type='HATVOLOClassifier', num_classes=NUM_CLASSES,
            arch=dict(layers=(1, 1, 1, 1), embed_dims=(16, 32, 32, 32),
                      num_heads=(2, 4, 4, 4), img_size=32, stem_hidden_dim=8))), 32
    modules = model.hat_compile_modules()
    ran = []
    for i, m in enumerate(modules):
        m.register_forward_hook(lambda *_, i=i: ran.append(i))
    model.train()
    model(torch.randn(2, 3, size, size), mode='tensor')
    assert sorted(set(ran)) == list(range(len(modules)))
    covered = {id(p) for m in modules for p in m.parameters()}
    inner = getattr(model, 'model', model)
    direct = {id(p) for p in inner.parameters(recurse=False)}
    everything = {id(p) for p in model.parameters()}
    assert everything - direct <= covered <= everything


def _tiny_volo(layers, **kwargs):
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='HATVOLOClassifier', num_classes=NUM_CLASSES, hat=dict(adv_iters=3),
        drop_path_rate=0.3, **kwargs,  # every block its own drop-path rate, as in VOLO-D1
        arch=dict(layers=layers, embed_dims=(16, 32, 32, 32), num_heads=(2, 4, 4, 4),
                  img_size=32, stem_hidden_dim=8)))

    class _Inputs(torch.nn.Module):  # the batch below is already preprocessed
        def forward(self, data, training=False):
            return data

    model.data_preprocessor = _Inputs()
    return model


def _volo_batch(model, seed, n=4):
    g = torch.Generator().manual_seed(seed)
    grid = model.token_grid(32, 32)
    samples = []
    for _ in range(n):
        label = int(torch.randint(0, NUM_CLASSES, (1, ), generator=g))
        y = torch.nn.functional.one_hot(torch.tensor(label), NUM_CLASSES).float()
        dense = torch.softmax(torch.randn(grid[0] * grid[1], NUM_CLASSES, generator=g), -1)
        sample = DataSample().set_gt_label(label).set_gt_score(y)
        sample.set_field(y, 'token_label_cls')
        sample.set_field(dense, 'token_label_dense')
        samples.append(sample)
    return dict(inputs=torch.randn(n, 3, 32, 32, generator=g), data_samples=samples)


def test_compiled_volo_is_one_graph_per_situation_whatever_its_depth():
    """VOLO's blocks each have their own drop-path rate; compiled stage by stage, dynamo
    recompiled the same block ``forward`` for every block (and for each grad mode) until its
    recompile limit left the rest eager. Compiled as one module, the graph count does not
    depend on the depth, later steps compile nothing, and the update is the eager one."""
    counts = {}
    for layers in [(1, 1, 1, 1), (2, 1, 5, 2)]:
        graphs, per_step = [], []
        torch._dynamo.reset()
        eager = _tiny_volo(layers)
        compiled = _tiny_volo(layers, compile=dict(backend=_counting_aot_eager(graphs)))
        assert list(compiled.state_dict()) == list(eager.state_dict())
        results = [_hat_updates(model, steps=3, batch=lambda i: _volo_batch(model, seed=i),
                                after_step=lambda: per_step.append(len(graphs)))
                   for model in (eager, compiled)]
        per_step = per_step[3:]  # the compiled model's
        for got, want in zip(*reversed(results)):
            for k, v in want.items():
                torch.testing.assert_close(got[k], v, rtol=1e-4, atol=1e-6, msg=k)
        assert per_step == [per_step[0]] * 3, f'recompiled in later steps: {per_step}'
        counts[layers] = per_step[0]
    assert len(set(counts.values())) == 1, f'graphs grow with the depth: {counts}'
    torch._dynamo.reset()


def _tiny_distilled(teacher, **fast_paths):
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='HATDistilledImageClassifier', hat=dict(adv_iters=3), **fast_paths,
        backbone=dict(type='DistilledVisionTransformer', img_size=16, patch_size=4,
                      arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                feedforward_channels=64), drop_path_rate=0.0),
        neck=None,
        head=dict(type='DeiTClsHead', num_classes=NUM_CLASSES, in_channels=32,
                  loss=dict(type='CrossEntropyLoss', use_soft=True)),
        distillation_loss=dict(type='DistillationLoss', distillation_type='soft', tau=2.0),
        teacher=dict(model=dict(type='TimmClassifier'), checkpoint='unused'),
        data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=NUM_CLASSES,
                               mean=[127.5] * 3, std=[60.0] * 3)))
    model.set_teacher(copy.deepcopy(teacher))
    return model


def test_the_teacher_runs_on_the_students_fast_paths():
    """DeiT's teacher (a convnet) runs K times per step: with ``channels_last`` its weights
    are channels-last, with ``compile`` it is compiled, and the update is the eager one."""
    torch.manual_seed(1)
    teacher = MODELS.build(dict(type='TimmClassifier', model_name='resnet10t',
                                num_classes=NUM_CLASSES))
    torch._dynamo.reset()
    eager = _tiny_distilled(teacher)
    fast = _tiny_distilled(teacher, channels_last=True,
                           compile=dict(backend='aot_eager', devices=['cpu']))
    reference = _hat_updates(eager, steps=2, soft=True)
    ours = _hat_updates(fast, steps=2, soft=True)
    _assert_same_updates(ours, reference)
    assert not hasattr(eager.teacher, 'hat_fast_paths') or \
        eager.teacher.hat_fast_paths == (False, False)
    assert fast.teacher.hat_fast_paths == (True, True)
    assert fast.teacher._compiled_call_impl is not None
    conv = fast.teacher.model.conv1[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    torch._dynamo.reset()


def test_fused_adamw_of_the_paper_configs_gives_the_for_each_update():
    """The paper configs build torch's fused AdamW. Three HAT steps with the optimizer of
    configs/hat_vit_b.py (its parameter groups, lr, decay): from the same weights and the same
    optimizer state, each step moves the weights as the for-each AdamW (the official code's)
    does. (Run on freely, the two drift apart after the first step: a last-bit difference in a
    weight changes the sign of a near-zero gradient, and both HAT's sign steps and Adam's
    normalisation make that a full-size step.)"""
    from mmengine.optim import build_optim_wrapper

    cfg = Config.fromfile('configs/hat_vit_b.py')
    assert cfg.optim_wrapper.optimizer.fused is True
    models, wrappers = [], []
    for fused in (True, False):
        model = _tiny_vit()
        model.train()
        model.set_hat_phase(True)
        optim_cfg = copy.deepcopy(cfg.optim_wrapper)
        optim_cfg.optimizer.fused = fused
        wrappers.append(build_optim_wrapper(model, optim_cfg))
        assert all(g['fused'] is fused for g in wrappers[-1].optimizer.param_groups)
        models.append(model)
    start = copy.deepcopy(models[0].state_dict())
    for i in range(3):
        steps = []
        for model, wrapper in zip(models, wrappers):
            torch.manual_seed(100 + i)
            model.train_step(random_batch(seed=i), wrapper)
            steps.append(model.state_dict())
        moved = 0
        for name, value in steps[0].items():
            torch.testing.assert_close(value, steps[1][name], rtol=1e-6, atol=1e-7)
            moved += int(not torch.equal(value, start[name]))
        assert moved > len(start) // 2  # the step did change the weights
        # the next step of both from the fused one's weights and moments
        start = copy.deepcopy(steps[0])
        models[1].load_state_dict(start)
        fused_opt, foreach_opt = (w.optimizer for w in wrappers)
        for p_fused, p_foreach in zip(models[0].parameters(), models[1].parameters()):
            foreach_opt.state[p_foreach] = {
                k: v.clone() for k, v in fused_opt.state[p_fused].items()}


@pytest.mark.parametrize('name', ['hat_swin_t', 'hat_vit_t', 'hat_volo_d1_224'])
def test_one_tensor_training_batches_give_the_same_preprocessed_batch(name, tmp_path):
    """The paper configs collate each training batch into one tensor (``default_collate``,
    as the official loader's fast_collate): through the config's data preprocessor (mixup /
    cutmix, erasing, VOLO's token labels) the batch is the one mmengine's default
    ``pseudo_collate`` (a list of images) gives, bit for bit."""
    from mmengine.runner import Runner
    from mmengine.runner.utils import set_random_seed

    from tools.dataset_converters.make_synthetic_imagenet import (
        make_synthetic_imagenet, make_synthetic_token_labels)
    data = str(tmp_path / 'data')
    make_synthetic_imagenet(data, num_train=4, num_val=0, num_classes=4, size=(64, 48),
                            workers=1)
    cfg = apply_hat(Config.fromfile(f'configs/{name}.py'))
    assert cfg.train_dataloader.collate_fn == dict(type='default_collate')
    cfg.train_dataloader.update(batch_size=4, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.update(data_root=data, indices=4)
    steps = [s['type'] for s in cfg.train_dataloader.dataset.pipeline]
    if 'LoadTokenLabel' in steps:
        step = cfg.train_dataloader.dataset.pipeline[steps.index('LoadTokenLabel')]
        step.label_root = make_synthetic_token_labels(data, grid=14)
    pre_cfg = cfg.model.get('data_preprocessor') or cfg.data_preprocessor
    batches, outputs = [], []
    for collate in ('default_collate', 'pseudo_collate'):
        loader_cfg = copy.deepcopy(cfg.train_dataloader)
        loader_cfg.collate_fn = dict(type=collate)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            loader = Runner.build_dataloader(loader_cfg, seed=0)
            preprocessor = MODELS.build(copy.deepcopy(pre_cfg))
        set_random_seed(3)
        batch = next(iter(loader))
        batches.append(batch['inputs'])
        set_random_seed(4)  # mixup / cutmix / erasing draws
        outputs.append(preprocessor(batch, training=True))
    one, listed = batches
    assert isinstance(one, torch.Tensor) and isinstance(listed, list) and len(listed) == 4
    assert torch.equal(one, torch.stack(listed))
    (a, b) = outputs
    assert set(a) == set(b) == {'inputs', 'data_samples'}
    assert torch.equal(a['inputs'], b['inputs'])
    assert not torch.equal(a['inputs'][0], a['inputs'][1])  # real, different images
    for sa, sb in zip(a['data_samples'], b['data_samples']):
        assert set(sa.keys()) == set(sb.keys()) and 'gt_score' in sa
        for key in sa.keys():  # the mixed targets, VOLO's token labels, ...
            va, vb = torch.as_tensor(sa.get(key)), torch.as_tensor(sb.get(key))
            assert torch.equal(va, vb), key
