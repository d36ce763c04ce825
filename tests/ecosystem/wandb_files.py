"""Read back an offline W&B run: the history records of its ``.wandb`` file.

The file is a LevelDB-style log (a 7-byte ``:W&B`` header, then 32 KiB blocks of chunks, each with a
7-byte header: CRC, length, type full/first/middle/last) of ``wandb_internal_pb2.Record`` messages.
wandb 0.31 ships no Python reader for it (its ``DataStore`` went with the Go core), so this is one.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[Any]:
    """Every Record of an offline run file, in the order written."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:_HEADER])
    assert ident == b":W&B" and magic == 0xBEE1, f"{path} is not a W&B run file"
    pos, chunks = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if left < _HEADER or (kind == 0 and length == 0):  # the zero padding at a block's end
            pos += left
            continue
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        chunks = chunk if kind in (_FULL, _FIRST) else chunks + chunk
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            yield record


def history(path: Path) -> list[dict[str, Any]]:
    """The run's history rows as ``{key: value}`` (nested keys joined with "/"), ``_step`` included."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {(item.key or "/".join(item.nested_key)): json.loads(item.value_json)
                 for item in record.history.item}  # fmt: skip
            )
    return rows


def metric_definitions(path: Path) -> list[Any]:
    """The run's ``define_metric`` records."""
    return [r.metric for r in records(path) if r.WhichOneof("record_type") == "metric"]


def config_updates(path: Path) -> dict[str, Any]:
    """The run's config, as its config records set it (later records win)."""
    config = {}
    for record in records(path):
        if record.WhichOneof("record_type") == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
    return config
