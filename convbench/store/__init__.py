"""Where results live: the SQLite store, merging stores, and DataFrames of results.

* `sqlite` — `Store`: WAL mode, one commit per result, raw samples, schema version.
* `schema` — the columns, statuses and schema version.
* `merge` — combine stores (the shards of a job array).
* `frames` — results and runs as pandas DataFrames; CSV/Parquet export.
"""

from convbench.store.schema import (
    DEFAULT_DB,
    RESULT_COLUMNS,
    RESULT_FIELDS,
    RUN_FIELDS,
    SCHEMA_VERSION,
    STATUSES,
)
from convbench.store.sqlite import Store

__all__ = [
    "DEFAULT_DB",
    "RESULT_COLUMNS",
    "RESULT_FIELDS",
    "RUN_FIELDS",
    "SCHEMA_VERSION",
    "STATUSES",
    "Store",
]
