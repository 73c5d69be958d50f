"""Run a per-item function over many items with `datasets.map`: worker processes and a progress bar.

Items and results cross the process boundary as JSON strings in one Arrow column, so rows with
different extra keys (or types) never trip Arrow's schema inference. The function must be defined at
module level (workers receive it by reference) and return a JSON-able dict. An exception it does not
handle becomes a result {"error": "..."} for that item instead of stopping the whole batch, unless it
is a fault of the machine (disk full, I/O error, out of memory: pipeline.faults), which is no fault of
the item: that one stops the batch and propagates, so that no good item is ever listed as a reject.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from pipeline.errors import DictuneError
from pipeline.faults import is_environment_error
from pipeline.files import sha256_json

logger = logging.getLogger("dictune")

ERROR_KEY = "error"  # result key holding the one-line reason an item failed


def map_items(
    fn: Callable[..., dict[str, Any]],
    items: list[dict[str, Any]],
    num_proc: int = 1,
    desc: str | None = None,
    fn_kwargs: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Return [fn(item, **fn_kwargs) for item in items], computed by datasets.map with num_proc workers."""
    if not items:
        return []
    from datasets import Dataset

    kwargs = dict(fn_kwargs or {})
    dataset = Dataset.from_list([{"item": json.dumps(item, ensure_ascii=False)} for item in items])
    workers = min(num_proc, len(items))
    mapped = dataset.map(
        _apply,
        fn_kwargs={"fn": fn, "kwargs": kwargs},
        num_proc=workers if workers > 1 else None,
        remove_columns=["item"],
        desc=desc,
        # An explicit fingerprint: datasets would otherwise try to hash `fn` and its arguments.
        new_fingerprint=sha256_json({"fn": fn.__qualname__, "kwargs": kwargs, "items": items})[:32],
    )
    return [json.loads(row) for row in mapped["result"]]


def _apply(row: dict[str, str], fn: Callable[..., dict[str, Any]], kwargs: dict[str, Any]) -> dict[str, str]:
    item = json.loads(row["item"])
    try:
        result = fn(item, **kwargs)
    except DictuneError as e:
        result = {ERROR_KEY: str(e)}
    except Exception as e:  # one bad item must not stop thousands of good ones; reason kept
        if is_environment_error(e):
            raise  # the machine's fault, not the item's: every later item would fail the same way
        logger.warning("unexpected %s while processing an item: %s", type(e).__name__, e)
        result = {ERROR_KEY: f"unexpected {type(e).__name__}: {e}".splitlines()[0]}
    return {"result": json.dumps(result, ensure_ascii=False)}
