"""Say where a training run stopped when it is interrupted, and how to go on.

A run stopped by Ctrl-C (SIGINT) or by SIGTERM (Slurm's preemption and ``scancel``, torchrun
passing its own signal on) otherwise ends in a traceback per process, or silently, with the
log ending at its last iteration line. :func:`report_interruption` logs on rank 0 which
checkpoint was the last and the ``--resume`` that continues from it; the process then exits
with the shell's code for the signal (130, 143).

The signal stops the run at the end of the iteration it arrives in (after that iteration's
hooks, so a checkpoint being written is finished, ``last_checkpoint`` included, and the line
names the checkpoint that file names): at most one iteration later, within the grace time
that Slurm and torchrun give before they kill (30 s by default) for the paper configs' steps
on GPUs; a second signal stops at once.
"""
import contextlib
import signal

from mmengine.hooks import Hook


SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised in the main thread as Ctrl-C's ``KeyboardInterrupt``."""


class _StopAtIterationEnd(Hook):
    """Raises :class:`TrainingInterrupted` after the iteration in which a signal came, once
    every other hook of that iteration has run."""
    priority = 'LOWEST'

    def __init__(self):
        self.signum = None

    def _stop_if_asked(self, *args, **kwargs) -> None:
        if self.signum is not None:
            raise TrainingInterrupted(self.signum)

    after_train_iter = after_val_iter = _stop_if_asked


def interruption_message(runner, signum: int) -> str:
    last = runner.message_hub.get_info('last_ckpt')  # set by mmengine's CheckpointHook
    where = f'in epoch {runner.epoch + 1} (iteration {runner.iter})'
    head = f'Training stopped by {signal.Signals(signum).name} {where}. '
    if not last:
        return head + 'No checkpoint had been written: start it again.'
    return head + (
        f'The last checkpoint is {last}: continue with the same command and --resume '
        f'(the latest checkpoint of --work-dir {runner.work_dir}) or --resume {last}; the '
        'iterations trained since that checkpoint are trained again.')


@contextlib.contextmanager
def report_interruption(runner):
    """Run the block (``runner.train()``) stopping at the end of an iteration on SIGINT or
    SIGTERM (at once on a second signal); then log :func:`interruption_message` (rank 0) and
    exit 128 + signal."""
    stopper = _StopAtIterationEnd()
    runner.register_hook(stopper)

    def on_signal(signum, frame):
        if stopper.signum is not None:
            raise TrainingInterrupted(signum)
        stopper.signum = signum

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    try:
        yield
    except KeyboardInterrupt as err:
        signum = err.args[0] if isinstance(err, TrainingInterrupted) else signal.SIGINT
        if runner.rank == 0:
            runner.logger.warning(interruption_message(runner, signum))
        raise SystemExit(128 + int(signum)) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
