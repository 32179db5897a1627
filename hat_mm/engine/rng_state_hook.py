"""Exact resume: a resumed run draws the same random numbers as the uninterrupted one.

mixup/cutmix, drop-path, dropout and the random crops draw from the torch, numpy and Python
generators of the main process and of the data workers. mmengine's checkpoints hold none of
their states, so a resumed run continues with other random numbers. :class:`RNGStateHook`
makes every epoch of epoch-based training start from a state that a checkpoint can carry:

- main process (every rank): the torch (and CUDA), numpy and Python generator states at the
  end of each training epoch are kept (gathered from all ranks) and written into the
  checkpoints of that epoch (``checkpoint['rng_state']``, plain tensors and numbers, so
  weights-only loading needs nothing more); the next epoch starts from them, in the
  uninterrupted run (validation in between draws from them without effect) as in a run
  resumed from that checkpoint;
- the train dataloader draws its workers' base seeds from a generator of its own, so
  creating the workers (once with ``persistent_workers``, every epoch without) no longer
  moves the main generators;
- data workers: on the first sample of every epoch, each worker reseeds its generators from
  ``(seed, epoch, rank, worker id)`` (the datasets' ``pipeline`` is wrapped), so their
  streams depend on the epoch only, with or without ``persistent_workers``;
- the sampler's seed (mmengine's ``DefaultSampler`` shuffles with ``seed + epoch``) is saved
  and restored with the states.

It covers epoch-based loops at epoch boundaries: mmengine's ``EpochBasedTrainLoop`` restarts
an interrupted epoch from its first batch, and iteration-based loops re-draw the skipped
batches, so a checkpoint saved inside an epoch carries no RNG state.
"""
import random

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def get_rng_state() -> dict:
    """This process's generator states as tensors and numbers (weights-only loadable)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = dict(torch=torch.get_rng_state(), python=random.getstate(),
                 numpy=dict(name=name, keys=torch.from_numpy(keys.astype(np.int64)),
                            pos=int(pos), has_gauss=int(has_gauss), gauss=float(gauss)))
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    """Restore :func:`get_rng_state`'s states, wherever the checkpoint's tensors were loaded:
    mmengine resumes with the checkpoint mapped onto the GPU, and the generators take CPU
    byte tensors only."""
    torch.set_rng_state(state['torch'].cpu())
    version, internal, gauss_next = state['python']
    random.setstate((version, tuple(internal), gauss_next))
    n = state['numpy']
    np.random.set_state((n['name'], n['keys'].cpu().numpy().astype(np.uint32), n['pos'],
                         n['has_gauss'], n['gauss']))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'].cpu())


class EpochSeededPipeline:
    """A dataset pipeline whose data workers reseed their generators at each new epoch."""

    def __init__(self, pipeline, seed: int, rank: int, epoch: torch.Tensor):
        self.pipeline, self.seed, self.rank, self.epoch = pipeline, seed, rank, epoch
        self._seen = None

    def __call__(self, results):
        worker = torch.utils.data.get_worker_info()
        if worker is not None and int(self.epoch) != self._seen:
            self._seen = int(self.epoch)
            seed = int(np.random.SeedSequence(
                [abs(int(self.seed)), self._seen, self.rank, worker.id]).generate_state(1)[0])
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
        return self.pipeline(results)

    def __getattr__(self, name):  # transforms, __repr__ helpers ... of the wrapped pipeline
        if name == 'pipeline':
            raise AttributeError(name)
        return getattr(self.pipeline, name)


def _datasets_with_pipeline(dataset) -> list:
    found, todo = [], [dataset]
    while todo:
        d = todo.pop()
        if callable(getattr(d, 'pipeline', None)):
            found.append(d)
        else:  # dataset wrappers: RepeatDataset, ConcatDataset, ClassBalancedDataset ...
            todo += list(getattr(d, 'datasets', None) or []) + (
                [d.dataset] if getattr(d, 'dataset', None) is not None else [])
    return found


def _sampler(loader):
    sampler = getattr(loader, 'sampler', None)
    if not hasattr(sampler, 'set_epoch'):
        sampler = getattr(getattr(loader, 'batch_sampler', None), 'sampler', None)
    return sampler


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Saves and restores the generator states so that resuming is exact (module doc)."""

    priority = 'VERY_HIGH'  # restore before any other hook draws; snapshot before saving

    def __init__(self):
        self._states = None  # one per rank, at the end of the last training epoch
        self._states_iter = None
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def before_train(self, runner) -> None:
        loader = runner.train_dataloader
        if loader.generator is None:
            loader.generator = torch.Generator().manual_seed(int(runner.seed))
        datasets = _datasets_with_pipeline(loader.dataset)
        for dataset in datasets:
            if not isinstance(dataset.pipeline, EpochSeededPipeline):
                dataset.pipeline = EpochSeededPipeline(dataset.pipeline, runner.seed,
                                                       get_rank(), self._epoch)
        if not datasets and loader.num_workers > 0:
            runner.logger.warning(
                f'RNGStateHook: {type(loader.dataset).__name__} has no `pipeline`; its data '
                'workers are not reseeded per epoch, so a resumed run may crop differently.')

    def before_train_epoch(self, runner) -> None:
        self._epoch.fill_(runner.epoch)
        if self._states is not None:
            set_rng_state(self._states[get_rank()])

    def after_train_epoch(self, runner) -> None:
        state = get_rng_state()
        self._states = all_gather_object(state) if get_world_size() > 1 else [state]
        self._states_iter = runner.iter

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._states is None or checkpoint.get('meta', {}).get('iter') != self._states_iter:
            return  # saved inside an epoch: resuming restarts the epoch anyway
        sampler = _sampler(runner.train_dataloader)
        checkpoint['rng_state'] = dict(ranks=self._states,
                                       sampler_seed=getattr(sampler, 'seed', None))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, '_resume', False):
            return  # load_from: weights only, this run's own random numbers
        saved = checkpoint.get('rng_state')
        if saved is None or len(saved['ranks']) != get_world_size():
            runner.logger.warning(
                'The checkpoint holds no random generator states '
                + ('(it was saved inside an epoch or by another tool)' if saved is None else
                   f"for {get_world_size()} processes (it has {len(saved['ranks'])})")
                + ': the resumed run continues with other random numbers than an '
                'uninterrupted one would.')
            return
        self._states, self._states_iter = saved['ranks'], checkpoint['meta'].get('iter')
        sampler = _sampler(runner.train_dataloader)
        if saved.get('sampler_seed') is not None and hasattr(sampler, 'seed'):
            sampler.seed = saved['sampler_seed']
