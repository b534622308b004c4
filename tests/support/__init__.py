"""Helpers shared by the template's tests, each written once.

The test modules and conftest files import from here, never from each other.
tests/ is on sys.path because pytest imports tests/conftest.py in its default
"prepend" import mode, which puts that file's directory first on sys.path.
"""
