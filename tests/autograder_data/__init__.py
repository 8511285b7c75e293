"""Fixtures of the autograder tests."""
