"""onnxruntime calls that stop when their time is up, so a specialist's time budget holds.

Python cannot interrupt a model call, but onnxruntime checks a run's `RunOptions.terminate`
flag between graph nodes. `StoppableSession` wraps an `InferenceSession` so that its runs carry
the calling thread's options, and `time_limit` sets that flag from a timer: a PP-OCR detection
at 1600 x 1600 px (one to four seconds on a loaded 2-core box) stops within about 60 ms of the
limit instead of running to its end. Sessions shared by several threads stay shared: the
options are per thread.

`pooled_session` is for a model whose activations are large (OCR detection: ~500 MB at
1600 px). Without onnxruntime's memory arena every tensor is a fresh allocation, and the first
run at each input size costs 2-3x the next (1.7-3.0 s against 0.9-1.3 s at 1600 px), which a
stopped run never pays off: under a budget shorter than that first run, every run is stopped.
With the arena, shrunk at the end of each run, the first run is as fast as the others, the
peak is lower (660 against 810-840 MB for a 1,600 px detection) and the memory is given back.

>>> with time_limit(0.5):  # doctest: +SKIP
...     engine.text_det(pixels)  # raises CallStopped if still running after half a second
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from operators.exceptions import InferenceError

_CURRENT = threading.local()  # .options: the RunOptions of this thread's limited calls
_SHRINK_ARENA = ("memory.enable_memory_arena_shrinkage", "cpu:0")


class CallStopped(InferenceError):
    """A model call stopped because its time limit passed (a budget, not a model fault)."""


class StoppableSession:
    """An onnxruntime `InferenceSession` whose runs obey the calling thread's `time_limit`.

    With `shrink_arena`, each run hands the memory arena's unused chunks back when it ends.
    """

    def __init__(self, session: Any, *, shrink_arena: bool = False) -> None:
        self.session = session
        self.shrink_arena = shrink_arena

    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        """`InferenceSession.run`, with this thread's options when the caller passes none."""
        options = run_options or getattr(_CURRENT, "options", None)
        if self.shrink_arena:
            if options is None:
                import onnxruntime

                options = onnxruntime.RunOptions()
            options.add_run_config_entry(*_SHRINK_ARENA)
        return self.session.run(output_names, input_feed, options)

    def __getattr__(self, name: str) -> Any:
        # everything else (inputs, outputs, metadata) is the wrapped session's
        return getattr(self.session, name)


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Runs of `StoppableSession`s in this thread stop after `seconds`, raising `CallStopped`.

    An error raised after the limit passed is taken for the stop it most likely is: the
    session reports a terminated run as a generic failure.
    """
    if seconds <= 0:
        raise CallStopped("no time was left for the model call")
    import onnxruntime

    options = onnxruntime.RunOptions()
    timer = threading.Timer(seconds, _terminate, (options,))
    timer.daemon = True
    _CURRENT.options = options
    timer.start()
    try:
        yield
    except Exception as error:
        if options.terminate:
            raise CallStopped(f"the model call was stopped after {seconds:.2f} s") from error
        raise
    finally:
        timer.cancel()
        _CURRENT.options = None


def _terminate(options: Any) -> None:
    options.terminate = True


def pooled_session(
    model_path: str, threads: int, providers: list[tuple[str, dict[str, Any]]] | None = None
) -> StoppableSession:
    """A session of `model_path` on a CPU memory arena shrunk after every run (see above), on
    `providers` (`onnx_device.session_providers`), else the CPU alone."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # errors reach us as exceptions; no console noise
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = True
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    # chunks of the size asked for: powers of two would double a 250 MB activation
    cpu = ("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})
    chosen = [cpu if name == cpu[0] else (name, opts) for name, opts in providers or [cpu]]
    session = onnxruntime.InferenceSession(model_path, options, providers=chosen)
    return StoppableSession(session, shrink_arena=True)


def make_stoppable(holders: list[Any]) -> None:
    """Wrap the `session` of each holder (rapidocr's `OrtInferSession`s) in a StoppableSession."""
    for holder in holders:
        if not isinstance(holder.session, StoppableSession):
            holder.session = StoppableSession(holder.session)
