"""Say where a training run stopped when it is interrupted, and how to go on.

A run stopped by Ctrl-C (SIGINT) or by SIGTERM (Slurm's preemption and ``scancel``, torchrun
passing its own signal on) otherwise ends in a traceback per process, or silently, with the
log ending at its last iteration line. :func:`report_interruption` turns SIGTERM into the same
exception as Ctrl-C around ``runner.train()``, and logs on rank 0 which checkpoint was the
last and the ``--resume`` that continues from it; the process then exits with the shell's
code for the signal (130, 143).
"""
import contextlib
import signal


class TrainingInterrupted(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's ``KeyboardInterrupt``."""


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
    """Run the block (``runner.train()``) with SIGTERM raised as :class:`TrainingInterrupted`;
    on it or on Ctrl-C, log :func:`interruption_message` (rank 0) and exit 128 + signal."""
    def on_sigterm(signum, frame):
        raise TrainingInterrupted(signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    except KeyboardInterrupt as err:
        signum = err.args[0] if isinstance(err, TrainingInterrupted) else signal.SIGINT
        if runner.rank == 0:
            runner.logger.warning(interruption_message(runner, signum))
        raise SystemExit(128 + int(signum)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
