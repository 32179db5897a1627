"""Name the rank that is gone when a distributed job loses one.

The error of a failed collective does not say which rank is missing (gloo: ``Connection reset
by peer`` or ``Timed out waiting ... for recv``; NCCL: a watchdog timeout). :func:`watch_ranks`
keeps a heartbeat of every rank in the job's rendezvous store (the TCP store that torchrun or
``init_process_group`` set up):

- a thread on each rank adds 1 to its own counter every few seconds and watches the counter of
  the next rank (a ring, so every rank is watched by one other); when that counter stops, it
  logs which rank stopped, on which host -- before the collective timeout ends the job, and
  also on NCCL, whose watchdog ends the process without a Python exception;
- when a collective fails in the watched block, the rank marks itself as failed, takes a roll
  call (whose counters still move) and raises :class:`LostRankError` naming the ranks that
  stopped without reporting an error: the ones that were killed, crashed, hang or lost their
  node.
"""
import datetime
import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import Dict, List, Optional

import torch.distributed as dist
from mmengine.logging import MMLogger

PREFIX = 'hat_mm/ranks'


class LostRankError(RuntimeError):
    """A collective failed because one or more ranks are gone; the message names them."""


# Words of the errors that gloo, NCCL and the store raise when a peer is gone. The autograd
# engine re-raises the error of a DDP gradient all-reduce as a plain RuntimeError whose text
# may name neither backend (gloo: ``Application timeout caused pair closure``).
COLLECTIVE_ERROR_MARKERS = ('gloo', 'NCCL', 'c10d', 'ProcessGroup', 'pair closure',
                            'Connection reset by peer', 'Connection closed by peer',
                            'Timed out waiting', 'Socket Timeout', 'Broken pipe')


def is_collective_error(err: BaseException) -> bool:
    """Whether ``err`` comes from torch.distributed (gloo, NCCL, the store)."""
    if isinstance(err, getattr(dist, 'DistError', ())):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and any(m in text for m in COLLECTIVE_ERROR_MARKERS)


class RankWatch:
    """Heartbeat counters of all ranks in ``store``; see the module docstring.

    Args:
        store: a ``torch.distributed.Store`` shared by all ranks.
        timeout: the collective timeout in seconds; the heartbeat interval is a tenth of it
            (at most 5 s) and a rank counts as stopped after six missed beats.
    """

    def __init__(self, store, rank: int, world_size: int, timeout: float):
        restart = os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')  # a new round, new keys
        self.store = dist.PrefixStore(f'{PREFIX}/{restart}', store)
        self.rank, self.world_size, self.timeout = rank, world_size, timeout
        self.interval = min(5.0, max(0.2, timeout / 10))
        self.lost_after = 6 * self.interval
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.saw_stopped_rank = False  # set by the heartbeat thread

    def _clone(self):
        """A connection of this thread's own, that gives up on a dead store host quickly."""
        try:
            store = self.store.clone()
        except (AttributeError, RuntimeError):  # a store kind without clone(): share it
            return self.store
        store.set_timeout(datetime.timedelta(seconds=max(10.0, 4 * self.interval)))
        return store

    def start(self) -> 'RankWatch':
        self.store.set(f'host/{self.rank}', f'host {socket.gethostname()}, pid {os.getpid()}')
        self.store.add(f'beat/{self.rank}', 1)
        self._thread = threading.Thread(target=self._run, args=(self._clone(), ),
                                        name='hat_mm-rank-watch', daemon=True)
        self._thread.start()
        return self

    def stop(self, finished: bool) -> None:
        if finished:
            try:
                self.store.set(f'done/{self.rank}', '1')
            except Exception:  # noqa: BLE001  a finished run does not fail on its report
                pass
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval)

    # -- the heartbeat thread ------------------------------------------------------------
    def _run(self, store) -> None:
        logger = MMLogger.get_current_instance()
        watched = (self.rank + 1) % self.world_size
        last, since, reported = None, time.monotonic(), False
        while not self._stop.wait(self.interval):
            try:
                store.add(f'beat/{self.rank}', 1)
                beats = store.add(f'beat/{watched}', 0)
                finished = any(store.check([f'{k}/{watched}']) for k in ('done', 'failed'))
            except Exception as err:  # noqa: BLE001  the store's host is gone
                logger.error(f'[rank {self.rank}] lost the rendezvous store '
                             f'({self._store_address()}): {err}. The node that hosts it '
                             '(rank 0, or node 0 under torchrun) is gone or unreachable.')
                return
            now = time.monotonic()
            if beats != last:
                if reported:
                    logger.warning(f'[rank {self.rank}] rank {watched} responds again.')
                last, since, reported = beats, now, False
            elif not reported and not finished and now - since > self.lost_after:
                reported = self.saw_stopped_rank = True
                logger.error(
                    f'[rank {self.rank}] rank {watched} ({self._host(store, watched)}) has '
                    f'sent no heartbeat for {now - since:.0f} s: it was killed (e.g. by the '
                    'out-of-memory killer), crashed, hangs, or its node is gone. A collective '
                    f'that waits for it fails after env_cfg.dist_cfg.timeout={self.timeout:g} s.')

    # -- after a failed collective -------------------------------------------------------
    def _host(self, store, rank: int) -> str:
        key = f'host/{rank}'
        return store.get(key).decode() if store.check([key]) else 'host unknown'

    @staticmethod
    def _store_address() -> str:
        return (f"MASTER_ADDR={os.environ.get('MASTER_ADDR', '?')}, "
                f"MASTER_PORT={os.environ.get('MASTER_PORT', '?')}")

    def _counters(self, store) -> Dict[int, int]:
        return {r: store.add(f'beat/{r}', 0) for r in range(self.world_size) if r != self.rank}

    def roll_call(self) -> Dict[str, List[int]]:
        """Ranks whose heartbeat stopped (``lost``: without reporting an error; ``failed``:
        after reporting one) and ranks still beating (``alive``)."""
        store = self._clone()
        store.set(f'failed/{self.rank}', '1')
        before = self._counters(store)
        time.sleep(2.5 * self.interval)
        after = self._counters(store)
        groups: Dict[str, List[int]] = dict(lost=[], failed=[], alive=[])
        for r in before:
            if after[r] != before[r]:
                groups['alive'].append(r)
            elif store.check([f'failed/{r}']):
                groups['failed'].append(r)
            elif not store.check([f'done/{r}']):
                groups['lost'].append(r)
        groups['hosts'] = {r: self._host(store, r) for r in groups['lost']}
        return groups

    def describe(self, err: BaseException) -> str:
        """The message of :class:`LostRankError` for the collective error ``err``."""
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
        head = f'[rank {self.rank}] a collective failed ({first_line}).'
        try:
            groups = self.roll_call()
        except Exception as store_err:  # noqa: BLE001
            return (f'{head} The rendezvous store ({self._store_address()}) cannot be reached '
                    f'either ({store_err}): the node that hosts it (rank 0, or node 0 under '
                    'torchrun) is gone.')
        lines = [head]
        if groups['lost']:
            names = ', '.join(f"rank {r} ({groups['hosts'][r]})" for r in groups['lost'])
            lines.append(f'Lost {names}: its heartbeat stopped without an error report, so it '
                         'was killed (e.g. by the out-of-memory killer), crashed, hangs, or its '
                         'node is gone. Look at its log and at the node.')
        if groups['failed']:
            lines.append('Ranks that saw the collective fail too: '
                         f"{', '.join(map(str, groups['failed']))}.")
        if not groups['lost'] and not groups['failed']:
            lines.append('Every other rank is still alive: one of them is stuck outside the '
                         'collective (slow storage or data loading, a deadlock), or the network '
                         'between the nodes failed.')
        lines.append(f'Collective timeout: env_cfg.dist_cfg.timeout={self.timeout:g} s.')
        return ' '.join(lines)


def _default_store():
    from torch.distributed import distributed_c10d
    getter = getattr(distributed_c10d, '_get_default_store', None)
    return getter() if getter is not None else None


@contextmanager
def watch_ranks(timeout: float):
    """Run the block with a :class:`RankWatch` when ``torch.distributed`` is initialized with
    more than one rank; a collective error inside it becomes a :class:`LostRankError`."""
    store = _default_store() if dist.is_available() and dist.is_initialized() else None
    if store is None or dist.get_world_size() < 2:
        yield None
        return
    try:
        watch = RankWatch(store, dist.get_rank(), dist.get_world_size(), timeout).start()
    except Exception as err:  # noqa: BLE001  the run goes on without names for lost ranks
        MMLogger.get_current_instance().warning(f'No rank heartbeat ({err}); a lost rank '
                                                'will not be named.')
        yield None
        return
    finished = False
    try:
        yield watch
        finished = True
    except Exception as err:
        # a runtime error after a peer's heartbeat stopped is taken as its consequence
        if not (is_collective_error(err)
                or (watch.saw_stopped_rank and isinstance(err, RuntimeError))):
            raise
        raise LostRankError(watch.describe(err)) from err
    finally:
        watch.stop(finished)
