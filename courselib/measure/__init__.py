"""Measurements, each in a fresh process, one method for all (Labs 01-04, the benches).

- :mod:`~courselib.measure.process`  this process's memory from /proc: now, peak, reset
- :mod:`~courselib.measure.runner`   run a function in a fresh process: its value, peak RSS
- :mod:`~courselib.measure.memory`   memory probes: loading, KV caches, a training step
- :mod:`~courselib.measure.speed`    decode speed, RAM and the memory-bandwidth roofline
- :mod:`~courselib.measure.compare`  the estimator's numbers beside the measurements (Lab 03)
- :mod:`~courselib.measure.savings`  what LoRA, QLoRA and the memory tips save, beside the
  estimates (Lab 04)
- :mod:`~courselib.measure.replies`  when each piece of a streamed reply arrived (Lab 02)

``run_isolated`` is re-exported here: ``from courselib.measure import run_isolated``.
"""

from courselib.measure.runner import Isolated, run_isolated

__all__ = ["Isolated", "run_isolated"]
