"""Pickle-based checkpoints built by the tests, without torch: the opcodes torch.save writes for a state dict of one
tensor, in torch's zip format and its legacy format, and the same files carrying a payload that runs a command."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from typing import Any

PROTO2 = b"\x80\x02"


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(value: str) -> bytes:
    raw = value.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _int(value: int) -> bytes:
    return b"K" + bytes([value])


def state_dict_pickle() -> bytes:
    """OrderedDict(weight=<a float tensor of 4 elements in storage "0">), as torch.save pickles it (protocol 2): the
    tensor rebuilt by torch._utils._rebuild_tensor_v2 from a persistent storage id."""
    ordered_dict = _global("collections", "OrderedDict") + b")R"
    storage_id = b"(" + _str("storage") + _global("torch", "FloatStorage") + _str("0") + _str("cpu") + _int(4) + b"tQ"
    tensor = (
        _global("torch._utils", "_rebuild_tensor_v2")
        + b"("
        + storage_id
        + _int(0)
        + b"("
        + _int(4)
        + b"t"  # size
        + b"("
        + _int(1)
        + b"t"  # stride
        + b"\x89"  # requires_grad=False
        + ordered_dict  # backward hooks
        + b"tR"
    )
    return PROTO2 + ordered_dict + b"(" + _str("weight") + tensor + b"u."


class _Stub:
    def __init__(self, *args: Any) -> None:
        self.args = args

    def __setitem__(self, key: Any, value: Any) -> None:
        self.args += ((key, value),)


def load_with_stubs(data: bytes) -> Any:
    """Unpickle `data` with every global replaced by a stub: proves a hand-built pickle is a valid one."""

    class Stubs(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            return _Stub

        def persistent_load(self, pid: Any) -> Any:
            return ("persistent", pid)

    return Stubs(io.BytesIO(data)).load()


class RunsCommand:
    """Pickled, calls os.system (posix.system) when unpickled. Never unpickled by the tests."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo owned > /tmp/model-manager-pickle-ran",))


def evil_pickle(protocol: int = 2) -> bytes:
    return pickle.dumps({"weight": RunsCommand()}, protocol=protocol)


def torch_zip(data_pkl: bytes, extra: dict[str, bytes] | None = None) -> bytes:
    """torch's zip format: archive/data.pkl, the storages under archive/data/, stored uncompressed."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", struct.pack("<4f", 1.0, 2.0, 3.0, 4.0))
        z.writestr("archive/version", "3\n")
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return out.getvalue()


def legacy_torch(main: bytes) -> bytes:
    """torch's legacy format: the magic number, protocol version and system info pickles, the object, the storage
    keys, then the raw storage bytes."""
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    version = pickle.dumps(1001, protocol=2)
    sys_info = pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
    keys = pickle.dumps(["0"], protocol=2)
    # Raw float data that happens to look like opcodes must not be read as a pickle.
    raw = struct.pack("<q", 4) + b"c" + b"os\nsystem\n" + b"\x00" * 5
    return magic + version + sys_info + main + keys + raw
