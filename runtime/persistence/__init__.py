"""Persistence: what the engine keeps, where, and how nothing is lost or written twice.

    engine hooks ──► service.Persistence ──► journal  (local file, fsync'd before each order)
                                         ├─► writer   (batched binary COPY to PostgreSQL,
                                         │             spill to local files while it is away)
                                         └─► snapshots (Redis: accounts, open orders, PnL,
                                                        plugin state)

- ``settings``: the ``[postgres]``, ``[redis]``, ``[journal]`` and ``[shutdown]`` config sections.
- ``migrations/`` + ``migrate``: versioned SQL, ``arbfleet db migrate``.
- ``schema``: TimescaleDB or native partitions, partition maintenance, ``arbfleet db maintain``.
- ``tables``: columns and row builders; ``writer`` and ``spill``: the batched writer.
- ``journal``: the order journal (why a local file: see its docstring); ``recordlog``: the
  checksummed record framing the journal and the spill share.
- ``snapshots``: Redis state snapshots; ``service``: all of it wired to the engine.

Nothing here is imported by the engine's hot path; with nothing configured, nothing runs.
"""
