"""Alembic migrations of the node store, run programmatically by ``gsomia.shell.store.migrate``.

To add one: ``alembic -x`` is not needed; create ``versions/NNNN_name.py`` with ``revision``
and ``down_revision`` (the previous file's revision) and ``upgrade()``/``downgrade()``.
"""
