"""Helpers the test modules share (fixtures stay in the conftest.py files; test modules import from here only)."""
