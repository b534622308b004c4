"""Tests of the generated project."""
