"""The allowlist scan of pickles: what real checkpoints hold passes, any other global is refused by name, in every
protocol and every container torch writes, and a global the scan cannot tell is refused too."""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_manager.loader.pickles import UnsafePickle, scan
from tests.pickles import (
    RunsCommand,
    evil_pickle,
    legacy_torch,
    load_with_stubs,
    state_dict_pickle,
    torch_zip,
)


def _scan(data: bytes) -> None:
    scan(io.BytesIO(data), "pytorch_model.bin")


def test_a_state_dict_as_torch_writes_it_passes_in_each_container() -> None:
    data = state_dict_pickle()
    loaded = load_with_stubs(data)  # a valid pickle, not just bytes the scan accepts
    assert loaded.args[0][0] == "weight"
    pickletools.dis(data, out=io.StringIO())
    _scan(data)
    _scan(torch_zip(data))
    _scan(legacy_torch(data))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_command_is_refused_naming_the_global_in_every_protocol(protocol: int) -> None:
    with pytest.raises(UnsafePickle, match=r"pytorch_model\.bin: imports posix\.system"):
        _scan(evil_pickle(protocol))


def test_a_command_inside_torch_containers_is_refused() -> None:
    with pytest.raises(UnsafePickle, match=r"pytorch_model\.bin \(archive/data\.pkl\): imports posix\.system"):
        _scan(torch_zip(evil_pickle()))
    with pytest.raises(UnsafePickle, match=r"imports posix\.system"):
        _scan(legacy_torch(evil_pickle()))
    # A second pickle member of the archive is scanned too.
    with pytest.raises(UnsafePickle, match=r"\(archive/extra\.pkl\): imports posix\.system"):
        _scan(torch_zip(state_dict_pickle(), {"archive/extra.pkl": evil_pickle()}))


def test_torchscript_archives_are_refused() -> None:
    with pytest.raises(UnsafePickle, match="TorchScript"):
        _scan(torch_zip(state_dict_pickle(), {"archive/code/__torch__.py": b"def forward(self): ..."}))


def test_a_second_pickle_after_the_first_is_scanned() -> None:
    with pytest.raises(UnsafePickle, match=r"posix\.system"):
        _scan(pickle.dumps([1, 2], protocol=2) + evil_pickle())


def test_bypasses_of_deny_lists_are_refused() -> None:
    cases = {
        # getattr reaches anything; deny-lists have missed it.
        "builtins.getattr": pickle.dumps(getattr, protocol=4),
        # A module no deny-list names that still runs programs.
        "pydoc.pipepager": b"\x80\x02" + b"cpydoc\npipepager\n" + b"X\x01\x00\x00\x00aX\x02\x00\x00\x00ls\x86R.",
    }
    for name, data in cases.items():
        with pytest.raises(UnsafePickle, match=name.replace(".", r"\.")):
            _scan(data)


def test_a_global_whose_name_is_computed_is_refused() -> None:
    # _codecs.encode("os", "latin1") leaves bytes the scan cannot read on the stack; STACK_GLOBAL then takes it as
    # the module name.
    computed = (
        b"\x80\x04"
        + b"\x8c\x07_codecs\x8c\x06encode\x93"  # _codecs.encode (allowed)
        + b"\x8c\x02os\x8c\x06latin1\x86R"  # ("os", "latin1") -> REDUCE: an unknown value
        + b"\x8c\x06system\x93."  # STACK_GLOBAL
    )
    with pytest.raises(UnsafePickle, match="computed"):
        _scan(computed)


def test_extension_codes_are_refused() -> None:
    with pytest.raises(UnsafePickle, match="extension registry"):
        _scan(b"\x80\x02\x82\x01.")  # EXT1 1


def test_memo_aliases_are_followed() -> None:
    # "posix" and "system" put in the memo, then fetched for a STACK_GLOBAL.
    data = b"\x80\x04\x8c\x05posix\x94\x8c\x06system\x94h\x00h\x01\x93."
    with pytest.raises(UnsafePickle, match=r"posix\.system"):
        _scan(data)


def test_files_that_are_not_pickles_pass() -> None:
    _scan(b"")
    _scan(struct.pack("<4f", 1, 2, 3, 4))  # raw tensors, as OpenVINO's .bin files are


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
        lambda inner: st.lists(inner) | st.tuples(inner, inner) | st.dictionaries(st.text(), inner),
        max_leaves=20,
    ),
    st.integers(0, pickle.HIGHEST_PROTOCOL),
)
def test_plain_data_passes_and_one_forbidden_global_anywhere_in_it_is_refused(value: object, protocol: int) -> None:
    _scan(pickle.dumps(collections.OrderedDict(v=value), protocol=protocol))
    with pytest.raises(UnsafePickle, match=r"posix\.system"):
        _scan(pickle.dumps([value, {"x": RunsCommand()}, value], protocol=protocol))
