"""Instructor tooling: generate student notebooks and autograde submissions (nbgrader + papermill).

``python -m autograder --help`` lists the steps; each has its module:

========================  ================================================================
``setup`` / ``generate``  :mod:`autograder.course`: nbgrader course directory, student versions
``collect``               :mod:`autograder.collect`: a folder or zip of submissions -> nbgrader layout
``grade``                 :mod:`autograder.grade`: the per-submission pipeline, the worker pool
``export``                :mod:`autograder.export`: grade sheet, feedback HTML, class summary
``sample-class``          :mod:`autograder.sample_class`: submissions with known scores
========================  ================================================================

Facts about nbgrader (0.9.5-0.9.6) and papermill (2.7) this package relies on:

- ``generate_assignment`` stores every locked cell and the hidden tests in the gradebook (SQLite
  via SQLAlchemy); creating the gradebook shells out to ``alembic``, so the venv's ``bin`` must
  be on ``PATH``. nbgrader's ``OverwriteCells`` restores locked cells from the gradebook by a
  checksum that covers neither the cell's tags nor its ``grade`` flag: a student who edits the
  metadata escapes grading unless the metadata is reset too (:mod:`autograder.grade.cells`).
- nbgrader scores a test cell 0 if it has an error output **or any stderr output** (a
  ``warnings.warn`` zeroes a test); the scores here count errors only, unless asked otherwise.
- nbgrader's executor has a per-cell timeout only, and a crashed kernel leaves the submission
  "needs manual grade"; the executor here adds a whole-notebook budget and scores a crash 0.
- A copied cell (duplicate ``grade_id``) makes nbgrader fail the whole submission; its test
  cells' tracebacks and hidden tests appear in feedback HTML unless removed.
- papermill inserts its ``injected-parameters`` cell after the first cell tagged ``parameters``
  (or at the top if there is none, where the defaults cell then overwrites it), and replaces
  the first cell already tagged ``injected-parameters`` wherever it is.
- Executing with papermill and then grading the outputs (``autograde --no-execute``) grades the
  outputs of code the student could have changed: only the notebook as restored from the
  gradebook is executed and graded here; submitted outputs are cleared first.
"""
