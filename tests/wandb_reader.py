"""Read an offline wandb run file (`run-*.wandb`): a LevelDB-style log of protobuf Records (wandb has no public
reader for it in 0.31). Used to check what a run logged without any network."""

import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK, HEADER = 32768, 7  # block size; file and record headers are both 7 bytes
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path) -> list:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb run file"
    out, index, pieces = [], HEADER, []
    while index + HEADER <= len(data):
        room = BLOCK - index % BLOCK
        if room < HEADER:  # the tail of a block too short for a header is padding
            index += room
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[index : index + HEADER])
        if length == 0 and kind == 0:
            break
        pieces.append(data[index + HEADER : index + HEADER + length])
        index += HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(pieces))
            out.append(record)
            pieces = []
    return out


def logged(path) -> tuple[set[str], dict[str, str]]:
    """(history keys, config key -> JSON value) of a run file."""
    history, config = set(), {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history |= {item.key or "/".join(item.nested_key) for item in record.history.item}
        elif kind == "config":
            config.update({item.key: item.value_json for item in record.config.update})
    return history, config
