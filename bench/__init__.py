"""Benchmarks: plain scripts, run together by ``python -m bench`` (``nox -s bench``)."""
