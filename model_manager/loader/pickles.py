"""An allowlist scan of pickle-based weights, without unpickling them.

Loading a pickle calls whatever globals it names. Deny-lists of dangerous globals keep being bypassed (a module
nobody listed that reaches `os` or `eval`), so this scan accepts only the globals real checkpoints name: torch's
tensor and parameter rebuilders and storage types, dtypes, `collections.OrderedDict`, numpy's array
reconstructors, a few harmless builtins. Any other global refuses the file, named.

The scan walks the opcodes with the standard library's parser (`pickletools.genops`) and tracks the stack's
shape as `pickletools.dis` does, so that a STACK_GLOBAL (protocol 4), whose module and name are taken from the
stack, is checked against the strings actually there (pushed, or fetched from the memo). A global whose name
cannot be known that way is refused too. Nothing is imported or called.

Files: torch's zip format (every `*.pkl` member; TorchScript archives, which carry code, are refused), torch's
legacy format (its five leading pickles) and plain pickle files (every pickle until the data that follows them).
A file that does not start with a pickle or a zip cannot be unpickled, and passes.
"""

from __future__ import annotations

import asyncio
import io
import pickletools
import tempfile
import zipfile
from typing import IO, Any

from model_manager.loader.errors import PermanentError
from model_manager.objectstore.base import ObjectStore

_STORAGES = [
    "Double",
    "Float",
    "Half",
    "BFloat16",
    "Long",
    "Int",
    "Short",
    "Char",
    "Byte",
    "Bool",
    "ComplexDouble",
    "ComplexFloat",
    "QUInt8",
    "QInt8",
    "QInt32",
    "QUInt4x2",
    "QUInt2x4",
    "Untyped",
]
_DTYPES = [
    "float64",
    "float32",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
    "complex64",
    "complex128",
    "qint8",
    "quint8",
    "qint32",
    "float8_e4m3fn",
    "float8_e5m2",
    "uint16",
    "uint32",
    "uint64",
]
_REBUILDERS = [
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_qtensor",
    "_rebuild_sparse_tensor",
    "_rebuild_device_tensor_from_numpy",
    "_rebuild_meta_tensor_no_storage",
]
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    [("torch", f"{s}Storage") for s in _STORAGES]
    + [("torch", d) for d in _DTYPES]
    + [("torch._utils", r) for r in _REBUILDERS]
    + [("torch", n) for n in ("Size", "device", "strided", "sparse_coo", "per_tensor_affine", "per_channel_affine")]
    + [("torch.storage", "UntypedStorage"), ("torch.serialization", "_get_layout")]
    + [("collections", "OrderedDict")]
    + [(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")]
    + [("numpy", "ndarray"), ("numpy", "dtype")]
    + [("_codecs", "encode")]  # how protocol 2 writes bytes (numpy arrays' buffers): encodes a str, nothing more
    + [(b, n) for b in ("builtins", "__builtin__") for n in ("set", "frozenset", "slice", "complex", "bytes")]
    + [("builtins", "bytearray"), ("__builtin__", "bytearray")]
)
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_TORCH_PICKLES = 5  # magic number, protocol version, system info, the object, its storages' keys
MAX_MEMBER_BYTES = 1 << 30
# Opcodes that push one value given in the opcode itself: the scan keeps strings (a STACK_GLOBAL's module and name)
# and integers (the legacy torch format's magic number).
_VALUE_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"} | {
    "INT",
    "BININT",
    "BININT1",
    "BININT2",
    "LONG",
    "LONG1",
    "LONG4",
}
_MARK = object()
_UNKNOWN = object()


class UnsafePickle(ValueError):
    """A pickle names a global outside the allowlist (or one that cannot be told); the message names it."""


def scan(fh: IO[bytes], name: str) -> None:
    """Scan the file open in `fh` (seekable); UnsafePickle naming `name` and the global when it is not safe."""
    head = fh.read(4)
    fh.seek(0)
    if head.startswith(b"PK"):
        _scan_zip(fh, name)
        return
    first = True
    while fh.read(1):
        fh.seek(-1, io.SEEK_CUR)
        try:
            value = _scan_one(fh, name)
        except UnsafePickle:
            raise
        except ValueError:
            # Not a pickle at all (nothing can unpickle it), or the data after the pickles (tensors, arrays).
            return
        if first and value == _LEGACY_TORCH_MAGIC:
            for _ in range(_LEGACY_TORCH_PICKLES - 1):
                _scan_one(fh, name)
            return
        first = False


def _scan_zip(fh: IO[bytes], name: str) -> None:
    try:
        archive = zipfile.ZipFile(fh)
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise UnsafePickle(f"{name}: not a readable zip archive ({e})") from e
    for info in members:
        parts = info.filename.split("/")
        if "code" in parts[:-1] or parts[-1] == "constants.pkl":
            raise UnsafePickle(f"{name}: a TorchScript archive ({info.filename}), which runs code of its own")
        if not info.filename.endswith(".pkl"):
            continue
        if info.file_size > MAX_MEMBER_BYTES:
            raise UnsafePickle(f"{name}: {info.filename} is larger than the scan reads")
        with archive.open(info) as member:
            _scan_one(io.BytesIO(member.read()), f"{name} ({info.filename})")


def _scan_one(fh: IO[bytes], name: str) -> Any:
    """Scan one pickle, leaving `fh` after its STOP; the value it pushed first, when it is a plain int or str."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    first: Any = _UNKNOWN
    for op, arg, _ in pickletools.genops(fh):
        kind = op.name
        if kind in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            if " " in attr:
                raise UnsafePickle(f"{name}: a global {arg!r} that cannot be told apart")
            _check(module, attr, name)
        elif kind == "STACK_GLOBAL":
            if len(stack) < 2 or not all(isinstance(v, str) for v in stack[-2:]):
                raise UnsafePickle(f"{name}: a global whose name is computed, which a scan cannot check")
            _check(stack[-2], stack[-1], name)
        elif kind in ("EXT1", "EXT2", "EXT4"):
            raise UnsafePickle(f"{name}: a global from the extension registry (code {arg}), which a scan cannot check")
        elif kind in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            if not stack or stack[-1] is _MARK:
                raise ValueError("memo of nothing")
            memo[len(memo) if kind == "MEMOIZE" else _memo_key(arg)] = stack[-1]
            continue
        elif kind in ("GET", "BINGET", "LONG_BINGET"):
            if _memo_key(arg) not in memo:
                raise ValueError(f"memo key {arg} unset")
            stack.append(memo[_memo_key(arg)])
            continue
        _apply(op, stack)
        if kind in _VALUE_OPS and isinstance(arg, (str, int)):
            stack[-1] = arg
        if first is _UNKNOWN and stack and stack[0] is not _MARK:
            first = stack[0]
    return first


def _memo_key(arg: Any) -> int:
    if not isinstance(arg, int):
        raise ValueError(f"memo key {arg!r} is not a number")
    return arg


def _apply(op: pickletools.OpcodeInfo, stack: list[Any]) -> None:
    """The opcode's effect on the stack's shape, as pickletools.dis models it; ValueError when it does not fit."""
    before, after = op.stack_before, op.stack_after
    if pickletools.markobject in before or (op.name == "POP" and stack and stack[-1] is _MARK):
        if _MARK not in stack:
            raise ValueError(f"{op.name} without a mark")
        while stack.pop() is not _MARK:
            pass
        count = before.index(pickletools.markobject) if pickletools.markobject in before else 0
    else:
        count = len(before)
    if len(stack) < count:
        raise ValueError(f"{op.name} on a stack too short")
    if count:
        del stack[-count:]
    stack.extend(_MARK if item is pickletools.markobject else _UNKNOWN for item in after)


def _check(module: str, attr: str, name: str) -> None:
    if (module, attr) not in ALLOWED:
        raise UnsafePickle(f"{name}: imports {module}.{attr}, which is not among the globals checkpoints use")


async def scan_stored(store: ObjectStore, prefix: str, paths: list[str]) -> None:
    """Scan each of `paths` as stored under `prefix` (read back: what engines will load is what is scanned);
    PermanentError naming the file and the global at the first that is not safe."""
    for path in paths:
        with tempfile.TemporaryFile() as fh:
            async for chunk in store.read(f"{prefix}/{path}"):
                fh.write(chunk)
            fh.seek(0)
            try:
                await asyncio.to_thread(scan, fh, path)
            except UnsafePickle as e:
                raise PermanentError(f"unsafe pickle: {e}; none of the model's files were kept") from e
