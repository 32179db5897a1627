"""Early checks of a config's inputs, with messages that say how to fix them."""
import difflib
import inspect
import os
import os.path as osp
import warnings
from typing import Iterable, Iterator, Optional, Tuple

from mmengine.runner import Runner

from .checkpoint import load_pretrained_state

# what each dataset family expects under data_root, and how to make small data of that kind
LAYOUTS = {
    'coco': ('COCO layout: <data_root>/annotations/instances_{train,val}2017.json, '
             '<data_root>/train2017/, <data_root>/val2017/',
             'python tools/dataset_converters/make_tiny_coco.py data/tiny_coco'),
    'ade': ('ADE20K layout: <data_root>/images/{training,validation}/*.jpg, '
            '<data_root>/annotations/{training,validation}/*.png',
            'python tools/dataset_converters/make_tiny_ade20k.py data/tiny_ade20k'),
    'imagenet': ('ImageNet layout: <data_root>/train/<class>/*.JPEG, <data_root>/val/*.JPEG, '
                 '<data_root>/meta/train.txt and val.txt; see README "Data"',
                 'python tools/dataset_converters/make_digits_imagenet.py data/digits'),
}


def dataset_layout(dataset_type) -> tuple:
    """(layout text, command that makes small data) of a dataset type."""
    name = str(dataset_type).lower()
    for key in ('coco', 'ade'):
        if key in name:
            return LAYOUTS[key]
    return LAYOUTS['imagenet']


def dataset_configs(cfg, prefix: str) -> Iterator[Tuple[str, dict]]:
    """Yield ``(config path, dataset cfg)``, looking inside dataset wrappers."""
    if not isinstance(cfg, dict):
        return
    if 'datasets' in cfg:  # ConcatDataset and friends
        for i, sub in enumerate(cfg['datasets']):
            yield from dataset_configs(sub, f'{prefix}.datasets.{i}')  # --cfg-options syntax
    elif 'dataset' in cfg:  # RepeatDataset, ClassBalancedDataset, ...
        yield from dataset_configs(cfg['dataset'], f'{prefix}.dataset')
    else:
        yield prefix, cfg


def check_dataset_paths(cfg, dataloader_keys: Iterable[str]) -> None:
    """Fail early when a dataloader's ``data_root`` or ``ann_file`` does not exist (every
    missing ``data_root`` of ``dataloader_keys`` in one message, before any ``ann_file``)."""
    missing, no_ann = [], None
    for key in dataloader_keys:
        loader = cfg.get(key)
        if not loader or 'dataset' not in loader:
            continue
        for where, ds in dataset_configs(loader['dataset'], f'{key}.dataset'):
            root = ds.get('data_root') or ''
            if '://' in str(root):
                continue  # remote storage: leave it to the file backend
            if root and not osp.isdir(root):
                missing.append((where, root, ds.get('type', '')))
                continue
            ann = ds.get('ann_file') or ''
            if ann and '://' not in str(ann):
                path = ann if osp.isabs(ann) else osp.join(root, ann)
                if not osp.isfile(path) and not no_ann:
                    no_ann = (f"{where}.ann_file='{ann}' does not exist (looked for {path}). "
                              f'Create it or set --cfg-options {where}.ann_file=... (an '
                              'empty ann_file makes mmpretrain scan class folders).')
    if missing:
        where, root, kind = missing[0]
        layout, small = dataset_layout(kind)
        also = ''.join(f"; {w}.data_root='{r}' does not exist either" for w, r, _ in missing[1:])
        line = ' '.join(f'{w}.data_root=/path/to/data' for w, _, _ in missing)
        raise FileNotFoundError(
            f"{where}.data_root='{root}' does not exist (looked in {osp.abspath(root)}){also}. "
            f'Put the dataset there ({layout}) or point the config at it: --cfg-options '
            f'{line}. Small data of this kind for a smoke run: {small}')
    if no_ann:
        raise FileNotFoundError(no_ann)


def _evaluator_ann_files(cfg, key: str) -> Iterator[Tuple[str, str]]:
    """Yield ``(config path, ann_file)`` of the metrics of evaluator ``key`` that have one."""
    evaluator = cfg.get(key)
    metrics = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    for i, metric in enumerate(metrics):
        ann = metric.get('ann_file') if isinstance(metric, dict) else None
        if ann:
            yield (key if not isinstance(evaluator, (list, tuple)) else f'{key}.{i}'), ann


def check_evaluator_files(cfg, evaluator_keys: Iterable[str]) -> None:
    """Fail early when an evaluator's ``ann_file`` (COCO metrics) does not exist."""
    for key in evaluator_keys:
        for where, ann in _evaluator_ann_files(cfg, key):
            if '://' not in str(ann) and not osp.isfile(ann):
                raise FileNotFoundError(
                    f"{where}.ann_file='{ann}' does not exist. Evaluators keep their own "
                    f'annotation path: set it with the data, e.g. --cfg-options '
                    f'{where}.ann_file=/path/to/annotations.json')


def _rebase(path: str, old_root: str, new_root: str) -> Optional[str]:
    """``path`` with its leading ``old_root`` replaced by ``new_root``; None if not under it."""
    old, path = old_root.rstrip('/'), str(path)
    if path == old or path.startswith(old + '/'):
        return new_root.rstrip('/') + path[len(old):]
    return None


# Top-level keys that mmengine's Runner (``Runner.from_cfg``, ``wrap_model``, ``train``;
# FlexibleRunner's ``strategy``), hat-mm (``HATRunner``, tools/train.py, tools/test.py) or the
# OpenMMLab test tools (``--tta``) read.
READ_TOP_LEVEL_KEYS = frozenset(inspect.signature(Runner.__init__).parameters) - {'self'} | {
    'compile', 'model_wrapper_cfg', 'find_unused_parameters', 'sync_bn',
    'activation_checkpointing', 'efficient_conv_bn_eval', 'strategy', 'runner_type',
    'custom_imports', 'hat', 'skip_unreadable_images', 'tta_model', 'tta_pipeline'}


CHECKPOINT_SUFFIXES = ('.pth', '.pth.tar', '.pt', '.tar', '.ckpt', '.bin', '.safetensors')


def check_config_file(path: str, usage: str = 'tools/train.py CONFIG') -> None:
    """Fail early on a config path that is missing (naming the closest configs of the
    repository), a folder, or not a config at all (a checkpoint given in its place)."""
    if osp.isdir(path):
        raise FileNotFoundError(f'config {path} is a folder: give a config file ({usage}), '
                                f'e.g. one of {osp.join(path, "*.py")}')
    if not osp.isfile(path):
        repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
        known = sorted(osp.relpath(osp.join(d, f), repo) for d, _, files in
                       os.walk(osp.join(repo, 'configs')) for f in files if f.endswith('.py'))
        close = difflib.get_close_matches(osp.normpath(path), known, n=3, cutoff=0.8)
        raise FileNotFoundError(f'config {path} does not exist'
                                + (f'; did you mean {" or ".join(close)}?' if close else
                                   ' (the configs are under configs/).'))
    if path.endswith(CHECKPOINT_SUFFIXES):
        raise ValueError(f'{path} is a checkpoint, not a config: the order is {usage}.')
    if not path.endswith(('.py', '.json', '.yml', '.yaml')):
        raise ValueError(f'config {path} is not a config file (.py): the order is {usage}.')


def check_top_level_options(cfg, options: dict) -> None:
    """``--cfg-options`` keys whose first part nothing reads: a typo of a key that is read
    (``hatt.adv_iters=2``) is refused with the key meant; a variable of the config file
    (``img_size=384``, substituted into the settings that use it when the file was read) or
    a key of your own is let through with a warning that it changes no setting of ours."""
    for option in options or {}:
        top = option.split('.')[0]
        if top in READ_TOP_LEVEL_KEYS or top == 'data_root':  # data_root: check_cfg_options
            continue
        if top not in cfg:  # the keys meant: those read (a file variable would change nothing)
            close = difflib.get_close_matches(top, sorted(READ_TOP_LEVEL_KEYS), n=1,
                                              cutoff=0.85)
            if close:
                raise ValueError(
                    f'--cfg-options {option}=...: the config has no top-level key {top!r}; '
                    f'did you mean {close[0]!r} (--cfg-options {close[0]}'
                    f'{option[len(top):]}=...)?')
        warnings.warn(
            f'--cfg-options {option}=...: {top!r} is '
            + ('a variable of the config file, already substituted into the settings that use '
               'it when the file was read' if top in cfg else 'not a key of this config')
            + ', and neither mmengine\'s runner nor hat-mm reads it: it changes no setting. '
            'Set the settings themselves (e.g. train_dataloader.dataset.pipeline...).')


def check_nested_options(cfg, options: dict) -> None:
    """Refuse a ``--cfg-options`` key whose part below the top level is missing from the
    config and a near miss of one that is there (``train_dataloader.batch_szie``): merged,
    it would become a new key, and fail only when that part is built, or change nothing.
    Parts that are new and like no key there (``model.compile.devices``) pass."""
    for option in options or {}:
        parts = option.split('.')
        node = getattr(cfg, '_cfg_dict', cfg)  # a Config's ConfigDict
        for depth, part in enumerate(parts):
            if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                continue
            if not isinstance(node, dict) or part in node:
                node = node.get(part) if isinstance(node, dict) else None
                continue
            siblings = [k for k in node if isinstance(k, str) and not k.startswith('_')]
            close = difflib.get_close_matches(part, siblings, n=1, cutoff=0.85)
            if depth and close:
                meant = '.'.join(parts[:depth] + [close[0]] + parts[depth + 1:])
                raise ValueError(
                    f'--cfg-options {option}=...: {".".join(parts[:depth])} has no key '
                    f'{part!r}; did you mean {close[0]!r} (--cfg-options {meant}=...)?')
            break


def check_cfg_options(cfg, options: dict) -> None:
    """Refuse ``--cfg-options data_root=...``, which would change nothing.

    mmengine substitutes a config file's variables (``data_root = 'data/imagenet'``) into the
    settings that use them when it reads the file, so a top-level ``data_root`` set afterwards
    reaches no dataset, and the run would silently use the default folder. The message gives
    the exact ``--cfg-options`` line that does move the data: every dataloader's
    ``data_root`` and every evaluator ``ann_file`` that the file derived from it (``cfg`` is
    the config as read, before the options are merged). The other top-level keys go through
    :func:`check_top_level_options`, the keys below them through
    :func:`check_nested_options`.
    """
    check_top_level_options(cfg, options)
    check_nested_options(cfg, options)
    if not options or 'data_root' not in options:
        return
    new, old = str(options['data_root']), cfg.get('data_root') or None
    keys = {}
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if isinstance(loader, dict) and 'dataset' in loader:
            for where, ds in dataset_configs(loader['dataset'], f'{key}.dataset'):
                root = ds.get('data_root')
                moved = new if old is None else _rebase(root or '', str(old), new)
                if root is not None and moved is not None:
                    keys[f'{where}.data_root'] = moved
    for key in ('val_evaluator', 'test_evaluator'):
        for where, ann in (_evaluator_ann_files(cfg, key) if old is not None else ()):
            moved = _rebase(ann, str(old), new)
            if moved is not None:
                keys[f'{where}.ann_file'] = moved
    if keys and all(options.get(k) == v for k, v in keys.items()):
        return  # the keys that matter are set too; the top-level one is harmless
    line = ' '.join(f'{k}={v}' for k, v in keys.items())
    why = (f'the config file\'s data_root ({old!r}) was already substituted into the dataset '
           'settings when the file was read' if old is not None else
           'this config has no top-level data_root; its datasets name their own')
    raise ValueError(
        f'--cfg-options data_root={new} would change nothing: {why}'
        + (f'. Set the keys that hold it instead:\n  --cfg-options {line}' if keys else
           ', and no dataloader of this config has a data_root to set.'))


def _pretrained_inits(node, where: str):
    """Yield ``(config path, init_cfg)`` of every init_cfg under ``node`` that is
    ``Pretrained`` or names a checkpoint."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f'{where}.{key}'
            if key == 'init_cfg':
                for i, init in enumerate(value if isinstance(value, list) else [value]):
                    if isinstance(init, dict) and (init.get('type') == 'Pretrained'
                                                   or 'checkpoint' in init):
                        yield (path if not isinstance(value, list) else f'{path}[{i}]', init)
            else:
                yield from _pretrained_inits(value, path)
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _pretrained_inits(item, f'{where}[{i}]')


def _pretraining_config(ckpt) -> str:
    """The config that writes ``work_dirs/<name>/...`` (``configs/<name>.py``, where it
    exists; the downstream configs' defaults are ``work_dirs/hat_swin_<size>/epoch_310.pth``)."""
    name = osp.basename(osp.dirname(osp.normpath(str(ckpt))))
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    found = name and osp.isfile(osp.join(repo, 'configs', f'{name}.py'))
    return f'configs/{name}.py' if found else 'configs/hat_swin_t.py'


def check_pretrained_paths(cfg) -> None:
    """Fail early, before anything is built, when a ``Pretrained`` init_cfg points at a local
    file that is missing, unreadable or without the keys of its ``prefix`` (an unconverted
    timm release), or when an init_cfg names a checkpoint without ``type='Pretrained'``
    (mmengine would fail on it only when training starts)."""
    for where, init in _pretrained_inits(cfg.get('model'), 'model'):
        ckpt = init.get('checkpoint')
        if init.get('type') != 'Pretrained':
            raise ValueError(
                f"{where} names checkpoint={ckpt!r} but its type is {init.get('type')!r}: "
                "mmengine loads it only with type='Pretrained' (and the prefix of the "
                f"module's keys): --cfg-options {where}.type=Pretrained "
                f'{where}.prefix=backbone.')
        if not ckpt or '://' in str(ckpt):
            continue
        if not osp.isfile(ckpt) and not osp.isdir(ckpt):
            raise FileNotFoundError(
                f"{where}.checkpoint='{ckpt}' does not exist. Pretrain it first (e.g. bash "
                f'tools/dist_train.sh {_pretraining_config(ckpt)} 8), convert an official '
                'release (tools/model_converters/timm_to_mmpretrain.py), or point the config at '
                f'your checkpoint: --cfg-options {where}.checkpoint=/path/to/checkpoint.pth')
        load_pretrained_state(ckpt, init.get('prefix'), f'{where}.checkpoint')
