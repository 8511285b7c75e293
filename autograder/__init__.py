"""Instructor tooling: generate student notebooks and autograde submissions (nbgrader + papermill).

The grading pipeline is built in a later issue; this package is its home.
"""
