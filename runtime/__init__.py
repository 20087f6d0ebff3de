"""Arbfleet runtime: the engine, its clients and the developer tooling around it."""

__version__ = "0.1.0"
