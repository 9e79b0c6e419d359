"""The opcode pre-scan of ``job_state`` pickles, run before the restricted unpickler sees them.

Two inputs make CPython's C unpickler misbehave before any class is looked up, so an allowlist
cannot stop them; they are found by walking the opcodes first:

* ``PUT``/``LONG_BINPUT`` with a huge memo index: the unpickler allocates and zeroes a memo
  array of twice that many pointers, gigabytes from six bytes;
* tuples nested deeply enough that hashing one (as a dict key or set member) overflows the C
  stack of CPython 3.11 and kills the process.

:func:`prescan` raises :class:`Rejected`, the exception every part of the decoder raises from
inside the unpickler; ``exporter.sidecar.decode`` turns it into ``UndecodableJob``.
"""

from __future__ import annotations

import pickletools
from typing import Final, NoReturn

__all__ = ["Rejected", "prescan", "reject"]


class Rejected(Exception):
    """Raised from inside the decoder; turned into ``UndecodableJob`` at its boundary."""


def reject(reason: str) -> NoReturn:
    raise Rejected(reason)


# Tuple hashing in CPython 3.11 recurses in C without a depth check, so a deeply nested tuple
# used as a dict key or set member crashes the process. Payloads with few tuple opcode bytes
# cannot nest deeply and skip the exact (slower) check.
_TUPLE_OPCODE_BYTES: Final = (b"t", b"\x85", b"\x86", b"\x87")
_TUPLE_BYTES_FAST_LIMIT: Final = 500
_MAX_TUPLE_DEPTH: Final = 200

_BAD: Final = -100
_LINE: Final = -1
_TWO_LINES: Final = -2
_LEN1: Final = -3
_LEN4: Final = -4
_LEN8: Final = -5
_PUT_LINE: Final = -6
_PUT4: Final = -7
_STOP: Final = -8

# Memo indices up to this cost the C unpickler at most 16 MiB; real pickles count from 0.
_MAX_MEMO_INDEX: Final = 1 << 20


def _opcode_table() -> tuple[int, ...]:
    """Per opcode byte: how far to step for a fixed-size opcode (always > 0), or a negative
    code for the kinds whose length is read from the data or that need a closer look."""
    table = [_BAD] * 256
    variable = {
        pickletools.UP_TO_NEWLINE: _LINE,
        pickletools.TAKEN_FROM_ARGUMENT1: _LEN1,
        pickletools.TAKEN_FROM_ARGUMENT4: _LEN4,
        pickletools.TAKEN_FROM_ARGUMENT4U: _LEN4,
        pickletools.TAKEN_FROM_ARGUMENT8U: _LEN8,
    }
    for op in pickletools.opcodes:
        if op.arg is None:
            step = 1
        elif op.arg.n >= 0:
            step = 1 + op.arg.n
        else:
            step = variable[op.arg.n]
        table[ord(op.code)] = step
    table[ord("c")] = table[ord("i")] = _TWO_LINES  # GLOBAL, INST: "module\nname\n"
    table[ord("p")] = _PUT_LINE
    table[ord("r")] = _PUT4
    table[ord(".")] = _STOP
    return tuple(table)


_OPCODE_STEPS: Final = _opcode_table()


def _check_memo_indices(data: bytes) -> None:
    """Walk the opcodes as the C unpickler will and reject huge explicit memo indices.

    ``PUT``/``LONG_BINPUT`` with index *n* make CPython's unpickler allocate and zero a memo
    array of 2*n pointers: six bytes of input can demand gigabytes. Only these two opcodes
    need the check (everything else the unpickler bounds by the input size), but finding
    them means stepping over every argument exactly as the unpickler does, since any byte
    inside a string could look like one. This loop is the hot path of a poll; keep it tight.
    """
    table = _OPCODE_STEPS
    end = len(data)
    i = 0
    try:
        while i < end:
            step = table[data[i]]
            if step > 0:
                i += step
            elif step == _LEN1:
                i += 2 + data[i + 1]
            elif step == _LEN4:
                size = int.from_bytes(data[i + 1 : i + 5], "little", signed=True)
                if size < 0:
                    reject("job_state is not a valid pickle")
                i += 5 + size
            elif step == _LEN8:
                i += 9 + int.from_bytes(data[i + 1 : i + 9], "little")
            elif step == _PUT4:
                if int.from_bytes(data[i + 1 : i + 5], "little") > _MAX_MEMO_INDEX:
                    reject("job_state uses an out-of-range memo index")
                i += 5
            elif step in (_LINE, _PUT_LINE):
                newline = data.index(b"\n", i + 1)
                if step == _PUT_LINE:
                    try:
                        index = int(data[i + 1 : newline])
                    except ValueError:
                        reject("job_state is not a valid pickle")
                    if not 0 <= index <= _MAX_MEMO_INDEX:
                        reject("job_state uses an out-of-range memo index")
                i = newline + 1
            elif step == _TWO_LINES:
                i = data.index(b"\n", data.index(b"\n", i + 1) + 1) + 1
            elif step == _STOP:
                return
            else:
                reject("job_state is not a valid pickle")
    except (IndexError, ValueError):  # ran off the end: the unpickler reports it too
        reject("job_state pickle is truncated")


_TUPLE_SIZES: Final = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_MEMO_PUTS: Final = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_MEMO_GETS: Final = frozenset({"GET", "BINGET", "LONG_BINGET"})


def _check_tuple_depth(data: bytes) -> None:
    """Reject tuples nested beyond :data:`_MAX_TUPLE_DEPTH` (exact, by simulating the stack).

    Only reached for payloads with many tuple opcode bytes, so it may be slow.
    """
    stack: list[int] = []
    marks: list[int] = []
    memo: dict[int, int] = {}
    try:
        for op, arg, _pos in pickletools.genops(data):
            name = op.name
            if name == "MARK":
                marks.append(len(stack))
            elif name == "TUPLE" or name in _TUPLE_SIZES:
                start = marks.pop() if name == "TUPLE" else len(stack) - _TUPLE_SIZES[name]
                if start < 0:
                    reject("job_state is not a valid pickle")
                depth = 1 + max(stack[start:], default=0)
                del stack[start:]
                if depth > _MAX_TUPLE_DEPTH:
                    reject("job_state nests tuples too deeply")
                stack.append(depth)
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in _MEMO_PUTS:
                memo[int(arg)] = stack[-1]  # type: ignore[arg-type]
            elif name in _MEMO_GETS:
                stack.append(memo.get(int(arg), 0))  # type: ignore[arg-type]
            elif name == "DUP":
                stack.append(stack[-1])
            else:
                before = op.stack_before
                if pickletools.markobject in before:
                    del stack[marks.pop() :]
                pops = sum(
                    1 for s in before if s not in (pickletools.markobject, pickletools.stackslice)
                )
                if pops > len(stack):
                    reject("job_state is not a valid pickle")
                if pops:
                    del stack[-pops:]
                stack.extend([0] * len(op.stack_after))
    except (ValueError, IndexError):
        reject("job_state is not a valid pickle")


def prescan(data: bytes) -> None:
    """Reject what the C unpickler would turn into a huge allocation or a crash."""
    _check_memo_indices(data)
    if sum(data.count(op) for op in _TUPLE_OPCODE_BYTES) > _TUPLE_BYTES_FAST_LIMIT:
        _check_tuple_depth(data)
