"""``python -m courselib doctor``: can this machine run the course? One PASS/FAIL line per check.

Each check runs in its own child process, so a library that kills its process (llama.cpp built
with instructions this CPU lacks dies with SIGILL) becomes a FAIL line with what to do, and the
remaining checks still run. See :mod:`courselib.doctor.checks` for the list.
"""

from courselib.doctor.checks import CHECKS, Check, Outcome, run_checks

__all__ = ["CHECKS", "Check", "Outcome", "run_checks"]
