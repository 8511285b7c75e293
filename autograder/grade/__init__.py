"""Grading: the per-submission pipeline (:mod:`.pipeline`), its steps (:mod:`.read`,
:mod:`.cells`, :mod:`.parameters`, :mod:`.execute`, :mod:`.score`), the kernel's limits
(:mod:`.limits`), the worker pool (:mod:`.run`) and the one writer (:mod:`.ledger`).

Example::

    from autograder.grade import grade
    report = grade(course, "lab03_memory", workers=2)
"""

from autograder.grade.run import GradingStopped, RunReport, grade

__all__ = ["GradingStopped", "RunReport", "grade"]
