"""The benchmark tools on CPU: the official-style step against hat-mm's update, and the tools
run and tabulate (speed numbers are measured by the tools, not asserted by tests)."""
import re

import pytest
import torch

from tools.analysis.benchmark_hat import main

from .runner_utils import DEMO_CONFIG


def test_benchmark_runs_all_three_steps_on_cpu(capsys):
    results = main([DEMO_CONFIG, '--device', 'cpu', '--batch-size', '4', '--iters', '2',
                    '--warmup', '1'])
    assert set(results) == {'plain', 'official', 'hat-mm'}
    assert all(r['sec'] > 0 and 0 < r['mfu'] for r in results.values())
    out = capsys.readouterr().out
    assert 'hat-mm speed vs official-style' in out and 'fast paths: none;' in out
    assert 'cudnn.benchmark False (all steps)' in out  # the demo config's env_cfg


def test_benchmark_compiles_the_hat_mm_model(capsys):
    """--compile with the default (inductor) backend: the path a user's run takes."""
    results = main([DEMO_CONFIG, '--device', 'cpu', '--batch-size', '4', '--iters', '2',
                    '--warmup', '1', '--steps', 'hat-mm', '--compile', '--peak-tflops', '1'])
    assert set(results) == {'hat-mm'} and results['hat-mm']['sec'] > 0
    out = capsys.readouterr().out
    assert "fast paths: {'compile': True}" in out
    # the demo ViT: backbone and head, one graph per grad situation, none recompiled later
    compiled = results['hat-mm']['compile']
    assert compiled['graphs'] >= 4 and compiled['graph_breaks'] == 0
    assert compiled['recompile_limit_hits'] == 0 and compiled['graphs_in_later_steps'] == 0
    assert 'hat-mm compile: ' in out


def test_eager_turns_the_configs_own_fast_paths_off(tmp_path, capsys):
    """The paper configs compile on CUDA: --eager measures the model without that, and
    --cfg-options still add one option on top."""
    import os.path as osp
    config = tmp_path / 'compiled_demo.py'
    config.write_text(f"_base_ = ['{osp.abspath(DEMO_CONFIG)}']\n"
                      "model = dict(compile=dict(backend='eager'), channels_last=True)\n")
    common = [str(config), '--device', 'cpu', '--batch-size', '2', '--iters', '1',
              '--warmup', '1', '--steps', 'hat-mm', '--peak-tflops', '1']
    results = main(common)
    assert 'compile' in results['hat-mm']  # as the config says
    assert "fast paths: {'compile': {'backend': 'eager'}, 'channels_last': True}" in \
        capsys.readouterr().out
    results = main(common + ['--eager'])
    assert 'compile' not in results['hat-mm']
    assert 'fast paths: none;' in capsys.readouterr().out
    main(common + ['--eager', '--cfg-options', 'model.channels_last=True'])
    assert "fast paths: {'channels_last': True}" in capsys.readouterr().out


def test_forward_flops_match_a_hand_count_including_attention():
    """The MFU numerator: FLOPs of a tiny ViT forward, counted by hand (2 per multiply-add)."""
    from tools.analysis.benchmark_hat import forward_flops_per_image

    from .helpers import NUM_CLASSES, tiny_vit_classifier
    model = tiny_vit_classifier().train()
    tokens, dim, ffn, layers, patches = 17, 32, 64, 2, 16  # 16x16 image, 4x4 patches + cls
    patch_embed = 2 * patches * (3 * 4 * 4) * dim
    per_layer = (2 * tokens * dim * 3 * dim  # qkv
                 + 2 * 2 * tokens * tokens * dim  # q @ k^T and attn @ v over all heads
                 + 2 * tokens * dim * dim  # output projection
                 + 2 * 2 * tokens * dim * ffn)  # the two FFN layers
    head = 2 * dim * NUM_CLASSES
    assert forward_flops_per_image(model, 16, 'cpu') == patch_embed + layers * per_layer + head


def test_benchmark_tables_collect_the_runs(tmp_path):
    """The tables tool runs benchmark_hat.py per variant and tabulates its JSON."""
    import json

    from tools.analysis.benchmark_tables import main as tables_main
    text, ok = tables_main(['--configs', DEMO_CONFIG, '--amp', 'none', '--device', 'cpu',
                            '--batch-size', '4', '--iters', '2', '--warmup', '1',
                            '--variants', 'eager', '--out-dir', str(tmp_path)])
    assert ok
    report = json.loads((tmp_path / 'hat_vit_digits_eager.json').read_text())
    assert set(report['steps']) == {'plain', 'official', 'hat-mm'}
    rows = [line for line in text.splitlines() if line.startswith('| ')][1:]
    assert [r.split(' | ')[0] for r in rows] == [
        '| plain step', '| official-style HAT', '| hat-mm HAT (eager)']
    ours = report['steps']['hat-mm']
    assert f"| {ours['img_per_s']:.0f} | {1e3 * ours['sec']:.1f} |" in rows[2]
    assert (tmp_path / 'tables.md').read_text() == text


def test_benchmark_tables_go_on_past_a_failed_run_and_stop_when_told(
        tmp_path, monkeypatch, capsys):
    import json

    from tools.analysis import benchmark_tables
    monkeypatch.setattr(benchmark_tables, 'variants_for', lambda config: {
        'eager': [], 'broken': ['--cfg-options', 'model.no_such_option=1'],
        'channels-last': ['--channels-last']})
    common = ['--configs', DEMO_CONFIG, '--amp', 'none', '--device', 'cpu', '--batch-size',
              '2', '--iters', '1', '--warmup', '1']
    text, ok = benchmark_tables.main(common + ['--out-dir', str(tmp_path / 'a')])
    assert not ok and 'failed runs: hat_vit_digits.py (broken)' in capsys.readouterr().out
    rows = [r.split(' | ')[:2] for r in text.splitlines() if r.startswith('| hat-mm')]
    assert rows[0] == ['| hat-mm HAT (eager)', rows[0][1]] and float(rows[0][1]) > 0
    assert rows[1] == ['| hat-mm HAT (broken)', 'failed (exit 1), see hat_vit_digits_broken.log']
    assert rows[2][0] == '| hat-mm HAT (channels-last)' and float(rows[2][1]) > 0  # went on
    assert 'no_such_option' in (tmp_path / 'a' / 'hat_vit_digits_broken.log').read_text()
    assert (tmp_path / 'a' / 'tables.md').read_text() == text

    text, ok = benchmark_tables.main(common + ['--out-dir', str(tmp_path / 'b'),
                                               '--stop-after', '0'])
    assert ok and text.count('not run (--stop-after 0 s)') == 3

    # a later run of one variant uses the baseline already in the folder
    eager_json = tmp_path / 'a' / 'hat_vit_digits_eager.json'
    mtime = eager_json.stat().st_mtime_ns
    text, ok = benchmark_tables.main(common + ['--out-dir', str(tmp_path / 'a'),
                                               '--variants', 'channels-last'])
    assert ok and eager_json.stat().st_mtime_ns == mtime  # not run again
    assert '| official-style HAT |' in text and '| hat-mm HAT (channels-last) |' in text
    assert 'broken' not in text

    # runs made one at a time into one folder, tabulated afterwards
    (tmp_path / 'a' / 'tables.md').unlink()
    again, ok = benchmark_tables.main(common + ['--out-dir', str(tmp_path / 'a'),
                                                '--tabulate-only'])
    assert ok and again == text

    # a run of another variant tables the earlier runs in the folder with its own
    text, ok = benchmark_tables.main(common + ['--out-dir', str(tmp_path / 'a'),
                                               '--variants', 'broken'])
    rows = {r.split(' | ')[0]: r.split(' | ')[1] for r in text.splitlines()
            if r.startswith('| hat-mm')}
    assert not ok and float(rows['| hat-mm HAT (channels-last)']) > 0
    assert rows['| hat-mm HAT (broken)'].startswith('failed (exit 1)')
    # ... and says so where an earlier run had other settings than the baseline
    earlier = tmp_path / 'a' / 'hat_vit_digits_channels-last.json'
    earlier.write_text(json.dumps(dict(json.loads(earlier.read_text()), amp='fp16')))
    text, ok = benchmark_tables.main(common + ['--out-dir', str(tmp_path / 'a'),
                                               '--tabulate-only'])
    assert ('| hat-mm HAT (channels-last) | other settings than the baseline: measure it '
            'again |') in text


def test_profile_counts_host_syncs_and_ranks_operators(tmp_path):
    """profile_steps on a function with a known number of .item() calls and matmuls."""
    import json

    import torch

    from tools.analysis.benchmark_hat import profile_steps
    a = torch.randn(64, 64)

    def step():
        b = a
        for _ in range(3):
            b = b @ a
        return b.sum().item() + a.max().item()  # two host syncs per step

    summary = profile_steps(step, 'cpu', steps=4, out_dir=str(tmp_path))
    assert summary['scalar_reads_per_step'] == 2.0 and summary['host_syncs_per_step'] == {}
    ops = {op['name']: op for op in summary['top_ops']}
    assert ops['aten::mm']['calls_per_step'] == 3.0
    assert summary['wall_ms_per_step'] > 0 and summary['device_busy_ms_per_step'] is None
    assert json.loads((tmp_path / 'profile.json').read_text()) == summary
    assert 'aten::mm' in (tmp_path / 'trace.json').read_text()


def test_profile_splits_the_time_by_kind_and_names_the_attention_kernels():
    """Per step: time by kind of kernel (on CPU: operators), the rate of the matmul and
    attention time, and which kernel each scaled_dot_product_attention call ran."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from tools.analysis.benchmark_hat import profile_steps
    a = torch.randn(384, 384)
    q = torch.randn(2, 2, 16, 8)

    def step():
        b = a
        for _ in range(3):
            b = b @ a
        F.scaled_dot_product_attention(q, q, q)  # CPU: the fused kernel
        with sdpa_kernel([SDPBackend.MATH]):
            F.scaled_dot_product_attention(q, q, q)
        return b

    flops = 3 * 2 * 384 ** 3
    summary = profile_steps(step, 'cpu', steps=3, flops_per_step=flops)
    assert summary['attention_calls_per_step'] == {'flash (cpu)': 1.0, 'math': 1.0}
    by_kind = summary['device_ms_by_kind_per_step']
    assert max(by_kind, key=by_kind.get) == 'matmul', by_kind
    assert list(by_kind.values()) == sorted(by_kind.values(), reverse=True)
    dense_ms = by_kind['matmul'] + by_kind['attention']
    assert summary['matmul_attention_tflops'] == pytest.approx(flops / dense_ms / 1e9)


@pytest.mark.parametrize('name, kind', [  # kernel names from an H100 profile (torch 2.11)
    ('nvjet_sm90_tst_192x192_64x4_2x1_v_bz_coopB_bias_TNN', 'matmul'),
    ('sm80_xmma_gemm_f32f32_f32f32_f32_nn_n_tilesize64x64x8_stage3_warpsize1x4x1_ffma_aligna4_'
     'alignc4_execute_kernel__5x_cublas', 'matmul'),
    ('fmha_cutlassB_bf16_aligned_64x64_k32_sm80(PyTorchMemEffAttention::AttentionBackward'
     'Kernel<cutlass::arch::Sm80, cutlass::bfloat16_t, true, false, true, 64, 64, 32>)',
     'attention'),
    ('cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_7_64x128x64_4x1x1_'
     'cga1x1x1_kernel0_0', 'attention'),
    ('void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float, float, '
     'false>(int, float, float const*)', 'normalisation'),
    ('void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl_nocast<at::'
     'native::direct_copy_kernel_cuda(at::TensorIteratorBase&)', 'copy and cast'),
    ('void at::native::(anonymous namespace)::multi_tensor_apply_kernel<at::native::'
     '(anonymous namespace)::FusedOptimizerTensorListMetadata<4>>', 'optimizer and for-each'),
    ('void at::native::vectorized_elementwise_kernel<8, at::native::GeluCUDAKernelImpl>',
     'other elementwise and reductions'),
    ('triton_tem_fused_addmm_3', 'matmul'),
    ('triton_per_fused_native_layer_norm_2', 'fused by inductor'),
    ('void at_cuda_detail::cub::detail::radix_sort::DeviceRadixSortOnesweepKernel', 'other'),
])
def test_kernel_kinds(name, kind):
    from tools.analysis.benchmark_hat import kernel_kind
    assert kernel_kind(name) == kind


def test_benchmark_profiles_the_hat_mm_step(tmp_path, capsys):
    results = main([DEMO_CONFIG, '--device', 'cpu', '--batch-size', '4', '--iters', '1',
                    '--warmup', '1', '--steps', 'hat-mm', '--peak-tflops', '1',
                    '--profile', str(tmp_path), '--profile-steps', '1'])
    prof = results['hat-mm']['profile']
    names = [op['name'] for op in prof['top_ops']]
    assert any('addmm' in n or 'aten::mm' in n or 'linear' in n for n in names), names
    assert 'profile of 1 hat-mm steps' in capsys.readouterr().out
    assert (tmp_path / 'trace.json').exists()


def test_benchmark_tables_measure_every_speed_option(tmp_path):
    """Swin gets the fused window attention variants, every config the optimizer and layout
    ones, and 'all' turns every option of the config on at once (run here on the demo)."""
    import json

    from tools.analysis.benchmark_tables import main as tables_main
    from tools.analysis.benchmark_tables import variants_for
    swin, vit = variants_for('configs/hat_swin_t.py'), variants_for(DEMO_CONFIG)
    assert set(swin) - set(vit) == {'fused', 'fused+compile', 'foreach-adamw',
                                    'per-param-groups'}
    assert set(vit) == {'eager', 'compile', 'autotune', 'fused-adamw', 'channels-last', 'all',
                        'defaults'}
    # each option on top of the eager model (the paper configs compile on CUDA), but the
    # config's defaults as they are, and those with one optimizer group per parameter
    defaults = ('defaults', 'per-param-groups')
    assert all(extra[0] == '--eager' for name, extra in swin.items() if name not in defaults)
    assert swin['defaults'] == [] and swin['eager'] == ['--eager']
    assert swin['per-param-groups'] == [
        '--cfg-options', 'optim_wrapper.constructor=DefaultOptimWrapperConstructor']
    # the paper configs have the fused AdamW on: their variant measures the for-each one
    assert 'fused-adamw' not in swin and swin['foreach-adamw'] == [
        '--eager', '--cfg-options', 'optim_wrapper.optimizer.fused=False']
    assert swin['autotune'] == ['--eager', '--compile', '--compile-mode',
                                'max-autotune-no-cudagraphs']
    with pytest.raises(SystemExit, match=r"--variants: unknown \['fused'\]"):
        tables_main(['--configs', DEMO_CONFIG, '--variants', 'fused', '--out-dir',
                     str(tmp_path)])  # a Swin-only option on a ViT config
    assert 'model.fused_window_attention=True' in swin['all']
    tables_main(['--configs', DEMO_CONFIG, '--amp', 'none', '--device', 'cpu',
                 '--batch-size', '4', '--iters', '1', '--warmup', '1',
                 '--variants', 'fused-adamw', '--out-dir', str(tmp_path)])
    report = json.loads((tmp_path / 'hat_vit_digits_fused-adamw.json').read_text())
    assert set(report['steps']) == {'hat-mm'} and report['optimizer']['fused'] is True


def test_official_style_step_is_the_hat_update():
    """The baseline the tables compare with computes what hat-mm's train_step computes (same
    update from the same weights and batch), so the ratio compares equal work."""
    import copy

    import torch
    from mmengine.optim import OptimWrapper

    from tools.analysis.benchmark_hat import official_style_step

    from .helpers import random_batch, tiny_vit_classifier
    ours = tiny_vit_classifier(hat=dict(adv_iters=3)).train()
    ours.set_hat_phase(True)
    data = ours.data_preprocessor(random_batch(), True)
    x, samples = data['inputs'], data['data_samples']
    official = copy.deepcopy(ours)
    before = {k: v.clone() for k, v in ours.state_dict().items()}

    ours.train_step(random_batch(), OptimWrapper(torch.optim.SGD(ours.parameters(), lr=0.5)))
    hat = official.hat
    optimizer = torch.optim.SGD(official.parameters(), lr=0.5)
    official_style_step(
        official, optimizer, torch.amp.GradScaler('cpu', enabled=False), x,
        lambda out, inputs: official.hat_classification_loss(out, samples, inputs)['loss'],
        official.hat_kl_logits, hat.adv_iters, hat.adv_eps, hat.adv_lr, hat.adv_kl_weight,
        hat.adv_ce_weight, None)
    moved = 0
    for name, value in official.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, rtol=1e-5, atol=1e-6)
        moved += int(not torch.equal(value, before[name]))
    assert moved > 10  # the step changed the weights


def test_benchmark_runs_distillation_and_token_labeling_models(capsys, monkeypatch):
    """DeiT-B distilled (its teacher built from the config, random weights: no checkpoint
    needed) and VOLO (token-label targets), shrunk: every step runs on the model's own loss."""
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', False)  # restored afterwards
    distilled = main(['configs/hat_deit_b_distilled.py', '--device', 'cpu', '--batch-size',
                      '2', '--iters', '1', '--warmup', '1', '--img-size', '32',
                      '--peak-tflops', '1', '--cfg-options', 'model.backbone.arch=deit-tiny',
                      'model.backbone.img_size=32', 'model.head.in_channels=192',
                      'model.teacher.model.model_name=resnet10t'])
    out = capsys.readouterr().out
    assert set(distilled) == {'plain', 'official', 'hat-mm'}
    assert ' + teacher ' in out and 'GFLOP/image forward' in out
    # the paper configs' env_cfg.cudnn_benchmark (the official scripts'), as the runner sets it
    assert 'cudnn.benchmark True (all steps)' in out and torch.backends.cudnn.benchmark
    volo = main(['configs/hat_volo_d1_224.py', '--device', 'cpu', '--batch-size', '2',
                 '--iters', '1', '--warmup', '1', '--img-size', '64', '--peak-tflops', '1',
                 '--cfg-options', 'model.model_name=None', 'model.arch.layers=(1,1,1,1)',
                 'model.arch.embed_dims=(16,32,32,32)', 'model.arch.num_heads=(2,4,4,4)',
                 'model.arch.img_size=64', 'model.arch.stem_hidden_dim=8',
                 'model.num_classes=10'])
    assert set(volo) == {'plain', 'official', 'hat-mm'}
    assert all(r['sec'] > 0 for r in list(distilled.values()) + list(volo.values()))


def test_benchmark_reports_when_dynamo_gives_up(capsys):
    """A recompile limit of 1 (the backbone needs a graph per grad situation) must show up
    as limit hits: code dynamo gives up on runs eager, and a table would not say so."""
    import torch
    with torch._dynamo.config.patch(recompile_limit=1):
        torch._dynamo.reset()
        results = main([DEMO_CONFIG, '--device', 'cpu', '--batch-size', '4', '--iters', '1',
                        '--warmup', '1', '--steps', 'hat-mm', '--peak-tflops', '1',
                        '--cfg-options', 'model.compile.backend=eager'])
    torch._dynamo.reset()
    assert results['hat-mm']['compile']['recompile_limit_hits'] >= 1


def test_benchmark_tables_say_what_compile_did():
    from tools.analysis.benchmark_tables import table
    step = dict(sec=0.1, img_per_s=40.0, mfu=0.1, peak_gib=None)
    base = dict(device_name='cpu', amp=None, batch_size=4, img_size=16, adv_iters=3,
                forward_gflop_per_image=0.01, peak_tflops=1.0)
    reports = {
        'eager': dict(base, steps=dict(plain=step, official=step, **{'hat-mm': step})),
        'compile': dict(base, steps={'hat-mm': dict(step, compile=dict(
            graphs=5, graph_breaks=0, recompile_limit_hits=0, graphs_in_later_steps=0))}),
        'autotune': dict(base, steps={'hat-mm': dict(step, compile=dict(
            graphs=9, graph_breaks=2, recompile_limit_hits=1, graphs_in_later_steps=0))}),
    }
    text = table('configs/x.py', reports)
    assert 'compile: 5 graphs, no graph break or recompile' in text
    assert ('autotune: 9 graphs, 2 graph breaks, 1 recompile-limit hits (that code ran '
            'eager).') in text


@pytest.mark.parametrize('flags, message', [
    (['--batch-size', '0'], '--batch-size 0: expected 1 or more'),  # was replaced by 16
    (['--iters', '0'], '--iters 0: expected 1 or more'),  # was "no median" after warm-up
    (['--warmup', '-1'], '--warmup -1: expected 0 or more'),
    (['--peak-tflops', '-1'], '--peak-tflops -1.0: expected a positive number'),
    (['--device', 'gpu'], '--device gpu: .*e.g. cuda, cuda:1, cpu'),
])
def test_benchmark_refuses_bad_numbers_before_building_anything(flags, message, capsys):
    from tools.analysis.benchmark_hat import parse_args
    with pytest.raises(SystemExit):
        parse_args([DEMO_CONFIG, *flags])
    assert re.search(message, capsys.readouterr().err)
