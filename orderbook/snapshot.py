"""Snapshots of a venue's whole processing state: `dump_state(obj) -> bytes`, `load_state(bytes) -> obj`.

The streaming worker snapshots, per Kafka partition, a `VenueWindows` (its feed with books, sync
buffers and pending venue state; its window builders with ring buffers and feature state; its
news and config) and restores it later so that processing continues exactly as if it had never
stopped. The codec is generic: it walks the object graph as pickle does, but into plain msgpack
values with tagged nodes, and it never imports or builds anything outside an allowlist. No pickle.

    blob = dump_state(vw)          # SnapshotError(reason="unsupported_type") names the attribute path
    vw2 = load_state(blob)         # SnapshotError(reason="corrupt" | "incompatible" | ...)

Layout (version 1; every integer big-endian)
--------------------------------------------

    offset  size  field
    0       6     magic b"MTSNAP"
    6       2     layout version, unsigned (LAYOUT_VERSION = 1)
    8       8     length of the body once decompressed, unsigned
    16      ...   the body as one zlib stream (RFC 1950, level 1; its Adler-32 checks the body)

A reader refuses another magic ("corrupt"), any version but its own ("incompatible": a later
layout must be refused, never misread), a declared length above its limit ("too_large"), and a
stream that is cut short, fails its checksum, inflates to another length or is followed by
anything ("corrupt"). The body is two msgpack objects, one after the other: the TABLE, then the
ROOT node.

TABLE: an array of entries `[kind, module, qualname, extra]`; an entry's position is its index.

    kind 0  a class or function referred to by value                extra: nil
    kind 1  a class whose instances appear (OBJ/NTUPLE nodes)      extra: its attribute names
    kind 2  an enum member                                          extra: the member's value

Attribute names are recorded once per class, so an instance's payload is positional. On load each
class's current names (see "Fields of a class" below) must be the same set as the recorded ones,
else the load fails with "incompatible" naming the class and the fields added and removed.

ROOT: a node. A node is one of
- a leaf: nil, bool, int (64-bit), float (64-bit, so -inf/inf/NaN/-0.0 come back bit for bit),
  str (UTF-8, lone surrogates passed through), bin (bytes), or an ext value:
    ext 1  global: the table entry at the big-endian unsigned index in its data (a class, a
           function or an enum member; enum members are leaves, so {Side.BID: ...} stays flat)
    ext 2  int beyond 64 bits: big-endian two's complement
    ext 3  numpy scalar: ASCII dtype.str, a NUL byte, the scalar's raw bytes
    ext 4  an attribute the instance does not have (a lazily set one): only in OBJ payloads
- an array `[tag, ...]`: a tagged node. Arrays appear nowhere else in node position, so a
  reader tells the two apart by type.

    tag  node                                          memo
    0    [0, index]                  REF               a node seen before (see below)
    1    [1, [node...]]              list              pre
    2    [2, [leaf...]]              list of leaves    pre (the msgpack array is adopted as is)
    3    [3, [node...]]              tuple             post
    4    [4, [leaf...]]              tuple of leaves   none (inline: not shared)
    5    [5, [key...], [value...]]   dict              pre
    6    [6, {leaf: leaf}]           dict of leaves    pre (the msgpack map is adopted as is)
    7    [7, [node...]]              set               pre
    8    [8, [node...]]              frozenset         post
    9    [9, [leaf...]]              frozenset of leaves  none
    10   [10, maxlen, [node...]]     collections.deque (maxlen: nil or int)  pre
    11   [11, [key...], [count...]]  collections.Counter  pre
    12   [12, factory, [key...], [value...]]  collections.defaultdict (factory: nil or ext 1)  pre
    13   [13, class, key, [key...], [value...]]  SortedDict or a subclass (class: table index; key:
                                     nil or ext 1; items in dict insertion order)          pre
    14   [14, class, key, [item...]]  SortedList / SortedKeyList                             pre
    15   [15, class, key, [item...]]  SortedSet                                              pre
    16   [16, dtype.str, [dim...], bin]  numpy array, C order (dtype kinds b i u f c m M S U)  pre
    17   [17, [dim...], [node...]]   numpy object array, elements in C order                pre
    18   [18, class, value...]       instance: one value per recorded attribute, in the recorded
                                     order (ext 4 where unset), optionally followed by
                                     [name...], [node...]: attributes the class does not declare  pre
    19   [19, class, [node...]]      NamedTuple instance                                     post
    20   [20, class, [leaf...]]      NamedTuple of leaves                                    none
    21   [21, node, name]            bound method: `name` looked up statically on the node's class
                                     (an instance method, or a classmethod where the node is a class)
    22   [22, class, column...]      list of instances of one slots class, all   pre, then the
                                     new here and holding leaves only: a column  instances in
                                     per recorded attribute, each [leaf...] or,  list order
                                     when all are members of one enum,
                                     [ext 1 of the enum class, [value...]]
    23   [23, [key...], class, column...]  dict whose values are such instances  pre, the keys, then
                                                                                 the instances

In node lists ("[node...]") leaves and tagged nodes mix freely; a reader decodes the arrays.

Identity: every node marked pre or post gets the next memo index when it is decoded: "pre" nodes
as soon as they are created, before their children (so cycles through them work), "post" nodes
(immutable, built from their children) after their children. REF names that index. The writer
numbers in exactly the same order, so anything shared is shared again on load: `_Book._levels`
maps the sides to the very SortedDicts that are `bids`/`asks`, a bound method's object is the one
restored elsewhere, and so on. A cycle that runs through a tuple cannot be rebuilt (the tuple
would have to exist before its items): dump refuses it.

Allowlist: classes and functions of modules named `orderbook` or `orderbook.*` (imported on load
if need be, by that name only), plus int float str bytes bool list tuple dict set frozenset,
collections.deque/Counter/defaultdict, sortedcontainers' SortedDict/SortedList/SortedKeyList/
SortedSet, numpy arrays and scalars of the dtype kinds above. A name outside it is refused
("unsupported_type") without importing anything. Objects are made with `cls.__new__(cls)` and their
attributes set directly (through the slot descriptors, or into `__dict__`, so frozen dataclasses
work too); no `__init__` runs, except the container types above, which are rebuilt through their
own class (DescendingSortedDict drops some attributes in its __init__; SortedList rebuilds its
index). The compiled classes of `orderbook.native._core` (books, feeds, window builders in Rust) are
refused too ("unsupported_type"): the codec cannot see their state, and walking them would save an
empty shell that restores as a fresh object.

Fields of a class: its slots, its base classes' slots, and for classes with a `__dict__` the
attributes its methods (and its bases' methods) assign on `self` (read off their bytecode:
`STORE_ATTR` right after loading the first argument), plus dataclass fields. Why not the
instance's own `__dict__`: a loader has no instance to compare with, and a field added to the
class since the snapshot must be noticed (the restored object would lack it). Attributes an
instance holds beyond them (set from outside the class) travel by name and are not checked.

What does not come back identical: sets iterate in the order their members were re-inserted
(as between two processes for str members); SortedList internals (chunk layout) are rebuilt;
numpy arrays come back C-contiguous and writeable, and two arrays that were views of one buffer
come back as two copies; tuples of leaves are not shared.

Choices, and why:
- Tuples that hold more than leaves are numbered after their items ("post"), so sharing of them
  survives too; tuples and frozensets of leaves are inlined, as their identity cannot matter.
- SortedDict items are stored in dict insertion order rather than sorted order: the rebuild sorts
  them anyway (timsort, near-linear here) and the restored dict then iterates exactly like the
  original at the dict level too.
- Leaves include allowlisted enum members and numpy scalars (as msgpack ext values), so a list or
  dict holding only those and plain values goes to msgpack in one piece: the per-node Python work
  is only for containers and instances. Enum members are table entries (kind 2), not nodes, so a
  member that no longer exists is reported once, as "incompatible", before anything is built.
- Runs of small slots objects (tags 22, 23) are columns: a 100k-order book is 100k `Order`s in
  one dict, and a column per field is a few C-level passes instead of a tagged node per order
  (dump and load of such a book: about 150 ms and 40 ms on a 2-core VM, pickle 370 ms each).
- Decoding bounds: the body's declared length (max_bytes, 1 GiB by default), msgpack's own
  limits set to the body's length and its nesting limit, Python's recursion limit. Python's hashes
  of ints and tuples are not randomized, so a crafted (not a corrupted) body can make a set or
  dict slow to rebuild; msgpack also turns its own timestamp ext (-1) into an inert
  msgpack.Timestamp value. Snapshots are meant to come from stores the worker itself writes.
"""

from __future__ import annotations

import dis
import gc
import importlib
import math
import re
import struct
import sys
import types
import zlib
from abc import ABC
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum
from operator import attrgetter
from typing import Any, Generic

import msgpack
import numpy as np
from sortedcontainers import SortedDict, SortedKeyList, SortedList, SortedSet

__all__ = ["LAYOUT_VERSION", "MAGIC", "MAX_STATE_BYTES", "SnapshotError", "dump_state", "load_state"]

MAGIC = b"MTSNAP"
LAYOUT_VERSION = 1
MAX_STATE_BYTES = 1 << 30  # the largest body load_state inflates unless told otherwise
_HEADER = struct.Struct(">6sHQ")

# reasons
CORRUPT, INCOMPATIBLE, UNSUPPORTED, TOO_LARGE = "corrupt", "incompatible", "unsupported_type", "too_large"

# table entry kinds
_G_REF, _G_CLASS, _G_ENUM = 0, 1, 2
# ext codes
_EXT_GLOBAL, _EXT_BIGINT, _EXT_NPSCALAR, _EXT_MISSING = 1, 2, 3, 4
# node tags
(REF, LIST, LIST_P, TUPLE, TUPLE_P, DICT, DICT_P, SET, FROZENSET, FROZENSET_P, DEQUE, COUNTER, DEFAULTDICT,
 SORTED_DICT, SORTED_LIST, SORTED_SET, NDARRAY, NDARRAY_OBJ, OBJ, NTUPLE, NTUPLE_P, METHOD,
 LIST_OBJS, DICT_OBJS) = range(24)  # fmt: skip

_LEAF_TYPES = frozenset({type(None), bool, int, float, str, bytes})
_DTYPE_KINDS = frozenset("biufcmMSU")
_MAX_DIMS = 32
_MODULE_RE = re.compile(r"orderbook(\.[A-Za-z_][A-Za-z0-9_]*)*")
_NATIVE_MODULE = "orderbook.native._core"  # Rust classes: no Python-visible state to walk
_NEUTRAL_BASES = frozenset({object, ABC, Generic})  # bases that hold no instance state of their own
_MISSING_EXT = msgpack.ExtType(_EXT_MISSING, b"")


class _Missing:
    """An attribute the instance did not have when it was saved (ext 4)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing attribute>"


_MISSING = _Missing()
_ABSENT = object()  # getattr default while dumping


class SnapshotError(Exception):
    """A snapshot that cannot be written or read. `reason`: "corrupt" (not a snapshot, damaged or
    cut short), "incompatible" (another layout version, or classes that changed since it was
    taken), "unsupported_type" (a value the codec does not save, or a blob naming something off the
    allowlist), "too_large" (a body above load_state's limit)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __str__(self) -> str:
        return f"snapshot {self.reason}: {self.args[0]}"


# ---------------------------------------------------------------- the allowlist


def _canonical(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


_BUILTINS: dict[str, Any] = {
    _canonical(o): o
    for o in (int, float, str, bytes, bool, list, tuple, dict, set, frozenset, deque, Counter, defaultdict, SortedDict)
}
_BUILTINS |= {_canonical(o): o for o in (SortedList, SortedKeyList, SortedSet)}
_BUILTIN_NAMES: dict[int, str] = {id(o): name for name, o in _BUILTINS.items()}


def _allowed_module(module: object) -> bool:
    return isinstance(module, str) and _MODULE_RE.fullmatch(module) is not None


def _static(cls: type, name: str) -> Any:
    """`name` as found on the class by the MRO, without running descriptors or __getattr__."""
    for c in cls.__mro__:
        if name in vars(c):
            return vars(c)[name]
    return None


def _lookup(module: types.ModuleType, qualname: str) -> Any:
    """`module.<qualname>` through the module's namespace, then classes' namespaces only (no
    __getattr__, no descriptors but staticmethod unwrapping). KeyError where a part is missing;
    ValueError for a part that is not a plain name or a path through anything but a class."""
    obj: Any = module
    for part in qualname.split("."):
        if not part.isidentifier() or (part.startswith("__") and part.endswith("__")):
            raise ValueError(f"{part!r} is not a name the codec resolves")
        if obj is not module and not (isinstance(obj, type) and _allowed_module(obj.__module__)):
            raise ValueError(f"{part!r} is looked up on {type(obj).__name__} {getattr(obj, '__name__', '?')}")
        obj = vars(obj)[part]
    return obj.__func__ if isinstance(obj, staticmethod) else obj


def _resolve(module: Any, qualname: Any) -> Any:
    """A table name to its object: the builtin allowlist, else an `orderbook.*` class or function
    (the module imported if need be). Nothing outside the allowlist is ever imported."""
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise SnapshotError(CORRUPT, f"table names {module!r}:{qualname!r}")
    name = f"{module}:{qualname}"
    if name in _BUILTINS:
        return _BUILTINS[name]
    if not _allowed_module(module):
        raise SnapshotError(UNSUPPORTED, f"{name} is not on the allowlist (orderbook.* and a few builtin types)")
    try:
        mod = sys.modules.get(module) or importlib.import_module(module)
    except Exception as err:  # an orderbook module that no longer exists, or fails to import
        raise SnapshotError(INCOMPATIBLE, f"{name}: module {module} cannot be imported: {err!r}") from None
    try:
        obj = _lookup(mod, qualname)
    except KeyError:
        raise SnapshotError(INCOMPATIBLE, f"{name} no longer exists") from None
    except ValueError as err:
        raise SnapshotError(UNSUPPORTED, f"{name}: {err}") from None
    if not isinstance(obj, type | types.FunctionType) or not _allowed_module(obj.__module__):
        raise SnapshotError(UNSUPPORTED, f"{name} is a {type(obj).__name__}, not a class or function of orderbook")
    return obj


# ---------------------------------------------------------------- classes


@dataclass(frozen=True)
class _ClassInfo:
    cls: type
    kind: str  # object, namedtuple, enum, sorted_dict, sorted_list, sorted_set
    slots: tuple[str, ...] = ()
    attrs: tuple[str, ...] = ()  # declared __dict__ attributes
    has_dict: bool = False

    @property
    def layout(self) -> tuple[str, ...]:
        if self.kind == "namedtuple":
            return tuple(self.cls._fields)  # type: ignore[attr-defined]
        return self.slots + self.attrs


_INFO: dict[type, _ClassInfo | str] = {}  # a class's info, or why its instances are refused

_SELF_LOADS = frozenset(
    {"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW", "LOAD_FAST_LOAD_FAST", "LOAD_FAST_BORROW_LOAD_FAST_BORROW"}
)


def _slot_names(cls: type) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for c in reversed(cls.__mro__):
        slots = vars(c).get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{c.__name__.lstrip('_')}{name}"
            out[name] = None
    return tuple(out)


def _self_stores(func: types.FunctionType) -> Iterator[str]:
    """Names of the attributes `func` assigns on its first argument (`self.x = ...`)."""
    code = func.__code__
    if not code.co_argcount:
        return
    me = code.co_varnames[0]
    prev = None
    for ins in dis.get_instructions(code):
        if ins.opname == "EXTENDED_ARG":
            continue
        if ins.opname == "STORE_ATTR" and prev is not None and prev.opname in _SELF_LOADS:
            arg = prev.argval
            if arg == me or (isinstance(arg, tuple) and arg and arg[-1] == me):
                yield ins.argval
        prev = ins


def _declared_attrs(cls: type, slots: tuple[str, ...]) -> tuple[str, ...]:
    """The __dict__ attributes the class's own code gives its instances (see "Fields of a class")."""
    names: dict[str, None] = {}
    for c in reversed(cls.__mro__):
        if not _allowed_module(c.__module__):
            continue
        members = sorted(vars(c).items(), key=lambda kv: kv[0] != "__init__")  # __init__ first: a stable order
        for _, member in members:
            if isinstance(member, property):
                funcs = [f for f in (member.fget, member.fset, member.fdel) if isinstance(f, types.FunctionType)]
            elif isinstance(member, types.FunctionType):
                funcs = [member]
            else:  # staticmethods have no self, classmethods assign on the class
                continue
            for f in funcs:
                names.update(dict.fromkeys(_self_stores(f)))
    if is_dataclass(cls):  # frozen dataclasses assign through object.__setattr__, which the scan does not see
        names.update(dict.fromkeys(f.name for f in fields(cls)))
    out = []
    for name in names:
        d = _static(cls, name)
        if name in slots or (d is not None and hasattr(type(d), "__set__")):  # a data descriptor keeps it elsewhere
            continue
        out.append(name)
    return tuple(out)


def _classify(cls: type) -> _ClassInfo:
    """How instances of `cls` are saved; SnapshotError(UNSUPPORTED) where they are not."""
    info = _INFO.get(cls)
    if isinstance(info, _ClassInfo):
        return info
    if info is None:
        info = _classify_uncached(cls)
        _INFO[cls] = info
    if isinstance(info, str):
        raise SnapshotError(UNSUPPORTED, info)
    return info


def _classify_uncached(cls: type) -> _ClassInfo | str:
    name = f"{cls.__module__}.{cls.__qualname__}"
    for base, kind in ((SortedDict, "sorted_dict"), (SortedSet, "sorted_set"), (SortedList, "sorted_list")):
        if issubclass(cls, base):
            if cls in (SortedDict, SortedSet, SortedList, SortedKeyList) or _allowed_module(cls.__module__):
                return _ClassInfo(cls, kind)
            return f"{name} is not on the allowlist"
    if not _allowed_module(cls.__module__):
        return f"{name} is not on the allowlist (instances of orderbook classes and a few builtin types)"
    if cls.__module__ == _NATIVE_MODULE:
        return f"{name} is compiled (orderbook/native): its state lives in Rust, out of the codec's sight"
    if issubclass(cls, Enum):
        for member in cls.__members__.values():
            if type(member.value) not in _LEAF_TYPES:
                return f"{name}.{member.name} has a {type(member.value).__name__} value (members are saved by value)"
        return _ClassInfo(cls, "enum")
    if issubclass(cls, tuple):
        if isinstance(getattr(cls, "_fields", None), tuple) and "__dict__" not in dir(cls):
            return _ClassInfo(cls, "namedtuple")
        return f"{name} is a tuple subclass that is not a NamedTuple"
    for base in cls.__mro__[1:]:
        if base not in _NEUTRAL_BASES and not _allowed_module(base.__module__):
            return f"{name} derives from {base.__module__}.{base.__qualname__}, whose state the codec cannot see"
    slots = _slot_names(cls)
    has_dict = bool(getattr(cls, "__dictoffset__", 0))
    return _ClassInfo(cls, "object", slots, _declared_attrs(cls, slots) if has_dict else (), has_dict)


_SORTED_BASE_ATTRS: dict[type, frozenset[str]] = {}


def _sorted_extra_attrs(x: Any) -> set[str]:
    """Instance attributes a sorted container has beyond what its class's constructor sets."""
    cls = type(x)
    base = _SORTED_BASE_ATTRS.get(cls)
    if base is None:
        base = _SORTED_BASE_ATTRS[cls] = frozenset(vars(cls()))
    return set(vars(x)) - base


def _member_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _describe(x: Any) -> str:
    try:
        return _short(x)
    except Exception:  # a repr that fails says nothing more than the type already did
        return f"<{type(x).__name__} object>"


def _short(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_dtype(dt: np.dtype) -> str | None:
    if dt.kind not in _DTYPE_KINDS or dt.hasobject or dt.fields is not None or dt.subdtype is not None:
        return f"numpy dtype {dt} is not saved (kinds {''.join(sorted(_DTYPE_KINDS))} only)"
    if dt.itemsize == 0:
        return f"numpy dtype {dt} has no size"
    return None


# ---------------------------------------------------------------- dumping


class _Fail(Exception):
    """An unsupported value; the path to it is collected while the stack unwinds."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message
        self.path: list[str] = []


class _Encoder:
    def __init__(self) -> None:
        self.memo: dict[int, int] = {}  # id -> memo index
        self.keep: list[Any] = []  # what the memo names stays alive, so no id is reused mid-dump
        self.table: list[list[Any]] = []
        self.gidx: dict[int, int] = {}  # id of a global (class, function, enum member) -> table index
        self.gexts: list[msgpack.ExtType] = []
        self.enum_exts: dict[int, msgpack.ExtType] = {}  # id of an enum member -> its ext value
        self.leaf: set[type] = set(_LEAF_TYPES)
        self.tuples_open: set[int] = set()  # tuples whose items are being encoded: a cycle back is refused
        self.handlers: dict[type, Callable[[Any], Any]] = {
            list: self.list_,
            tuple: self.tuple_,
            dict: self.dict_,
            set: self.set_,
            frozenset: self.frozenset_,
            deque: self.deque_,
            Counter: self.counter,
            defaultdict: self.defaultdict_,
            np.ndarray: self.ndarray,
            types.MethodType: self.method,
            types.FunctionType: self.global_,
        }

    # -- identity

    def seen(self, x: Any) -> list[Any] | None:
        i = self.memo.get(id(x))
        return None if i is None else [REF, i]

    def remember(self, x: Any) -> None:
        self.memo[id(x)] = len(self.memo)
        self.keep.append(x)

    # -- the table

    def gref(self, x: Any) -> int:
        """The table index of a class or function, added as kind 0 on first sight."""
        i = self.gidx.get(id(x))
        if i is None:
            name = _BUILTIN_NAMES.get(id(x))
            if name is not None:
                module, qualname = name.split(":")
            else:
                module, qualname = self.global_name(x)
            i = len(self.table)
            self.table.append([_G_REF, module, qualname, None])
            self.gidx[id(x)] = i
            self.keep.append(x)
        return i

    @staticmethod
    def global_name(x: Any) -> tuple[str, str]:
        module, qualname = getattr(x, "__module__", None), getattr(x, "__qualname__", None)
        what = f"{module}.{qualname}" if isinstance(qualname, str) else repr(x)
        if isinstance(qualname, str) and "<lambda>" in qualname:
            raise _Fail(UNSUPPORTED, f"a lambda ({what}) cannot be saved: functions are saved by module and name")
        if not _allowed_module(module) or not isinstance(qualname, str):
            raise _Fail(UNSUPPORTED, f"{type(x).__name__} {what} is not on the allowlist (orderbook.* only)")
        if "<locals>" in qualname:
            raise _Fail(UNSUPPORTED, f"{what} is defined inside a function: it cannot be found by name on load")
        try:
            found = _lookup(sys.modules[module], qualname)
        except (KeyError, ValueError):
            found = None
        if found is not x:
            raise _Fail(UNSUPPORTED, f"{what} is not reachable as {module}:{qualname}")
        return module, qualname

    def gext(self, i: int) -> msgpack.ExtType:
        while len(self.gexts) <= i:
            n = len(self.gexts)
            self.gexts.append(msgpack.ExtType(_EXT_GLOBAL, n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")))
        return self.gexts[i]

    def class_index(self, info: _ClassInfo) -> int:
        """The table index of a class whose instances appear, with its layout."""
        i = self.gref(info.cls)
        entry = self.table[i]
        if entry[0] != _G_CLASS:
            entry[0], entry[3] = _G_CLASS, list(info.layout)
        return i

    def default(self, o: Any) -> msgpack.ExtType:
        """msgpack's hook for the leaves it cannot pack itself: enum members, big ints, numpy scalars."""
        ext = self.enum_exts.get(id(o))  # enum members are singletons: their ids stay theirs
        if ext is not None:
            return ext
        t = type(o)
        if t is int:
            return msgpack.ExtType(_EXT_BIGINT, o.to_bytes((o.bit_length() + 8) // 8, "big", signed=True))
        if isinstance(o, Enum):
            i = self.gidx.get(id(o))
            if i is None:
                i = len(self.table)
                self.table.append([_G_ENUM, t.__module__, t.__qualname__, o.value])
                self.gidx[id(o)] = i
            ext = self.enum_exts[id(o)] = self.gext(i)
            return ext
        if isinstance(o, np.generic):
            return msgpack.ExtType(_EXT_NPSCALAR, o.dtype.str.encode("ascii") + b"\0" + o.tobytes())
        raise TypeError(f"unexpected leaf {t.__name__}")  # a bug: only admitted leaf types reach here

    # -- dispatch

    def enc(self, x: Any) -> Any:
        t = type(x)
        h = self.handlers.get(t)
        if h is None:
            h = self.admit(t, x)
        return h(x)

    def admit(self, t: type, x: Any) -> Callable[[Any], Any]:
        """The handler of a type seen for the first time (leaf types join `leaf`)."""
        if isinstance(x, type):  # classes, whatever their metaclass (ABCMeta, EnumMeta)
            self.handlers[t] = self.global_
            return self.global_
        if isinstance(x, np.generic):
            why = _check_dtype(x.dtype)
            if why:
                raise _Fail(UNSUPPORTED, why)
            self.leaf.add(t)
            return _identity
        try:
            info = _classify(t)
        except SnapshotError as err:
            raise _Fail(UNSUPPORTED, f"{err.args[0]}: {_describe(x)}") from None
        if info.kind == "enum":
            self.leaf.add(t)
            h: Callable[[Any], Any] = _identity
        elif info.kind == "namedtuple":
            h = self.ntuple_handler(info)
        elif info.kind == "sorted_dict":
            h = self.sorted_dict
        elif info.kind in ("sorted_list", "sorted_set"):
            h = self.sorted_seq
        else:
            h = self.obj_handler(info)
        self.handlers[t] = h
        return h

    def items(self, seq: Iterable[Any], label: Callable[[int], str] | None = None) -> list[Any]:
        leaf, enc = self.leaf, self.enc
        out: list[Any] = []
        append = out.append
        try:
            for v in seq:
                append(v if type(v) in leaf else enc(v))
        except _Fail as f:
            f.path.append(label(len(out)) if label else f"[{len(out)}]")
            raise
        return out

    def leaves(self, seq: Iterable[Any]) -> bool:
        return self.leaf.issuperset(map(type, seq))  # a C loop: a third of the time of all(...)

    # -- builtin containers

    def list_(self, x: list[Any]) -> list[Any]:
        ref = self.seen(x)
        if ref:
            return ref
        self.remember(x)
        if self.leaves(x):
            return [LIST_P, x]
        run = self.obj_run(x)
        if run is not None:
            return [LIST_OBJS, *run]
        return [LIST, self.items(x)]

    def tuple_(self, x: tuple[Any, ...]) -> list[Any]:
        ref = self.seen(x)
        if ref:
            return ref
        if self.leaves(x):
            return [TUPLE_P, list(x)]
        return [TUPLE, self.post_order_items(x)]

    def post_order_items(self, x: Any) -> list[Any]:
        """Items of an immutable container, which is numbered after them (see the layout)."""
        key = id(x)
        if key in self.tuples_open:
            raise _Fail(UNSUPPORTED, f"a cycle runs through this {type(x).__name__}, which is rebuilt from its items")
        self.tuples_open.add(key)
        try:
            out = self.items(x)
        finally:
            self.tuples_open.discard(key)
        self.remember(x)
        return out

    def dict_(self, x: dict[Any, Any]) -> list[Any]:
        ref = self.seen(x)
        if ref:
            return ref
        self.remember(x)
        leaf_keys = self.leaves(x)
        if leaf_keys and self.leaves(x.values()):
            return [DICT_P, x]
        keys = list(x)
        k = keys if leaf_keys else self.items(keys, lambda i: f".keys()[{i}]")
        run = self.obj_run(list(x.values()))  # numbered after the keys, as the reader does
        if run is not None:
            return [DICT_OBJS, k, *run]
        return [DICT, k, self.items(x.values(), lambda i: f"[{_short(keys[i])}]")]

    def dict_items(self, x: dict[Any, Any]) -> tuple[list[Any], list[Any]]:
        keys = list(x)
        return self.items(keys, lambda i: f".keys()[{i}]"), self.items(x.values(), lambda i: f"[{_short(keys[i])}]")

    def obj_run(self, values: list[Any]) -> list[Any] | None:
        """[class index, column...] for values that are all new instances of one slots class holding
        only leaves (numbered here, in order); None where the general path must encode them."""
        if len(values) < 2:
            return None
        t = type(values[0])
        info = _INFO.get(t)
        if info is None:
            try:
                info = _classify(t)
            except SnapshotError:
                return None
        if not isinstance(info, _ClassInfo) or info.kind != "object" or info.has_dict or not info.slots:
            return None
        if not {t}.issuperset(map(type, values)):
            return None
        ids = list(map(id, values))
        memo = self.memo
        if not memo.keys().isdisjoint(ids) or len(set(ids)) != len(ids):
            return None
        try:
            rows = list(map(_getter(info.slots), values))
        except AttributeError:  # an unset slot
            return None
        columns = [self.column(list(c)) for c in zip(*rows, strict=True)]
        if any(c is None for c in columns):
            return None
        base = len(memo)
        memo.update(zip(ids, range(base, base + len(ids)), strict=True))
        self.keep.extend(values)
        return [self.class_index(info), *columns]

    def column(self, column: list[Any]) -> list[Any] | None:
        """One attribute of a run as stored: the values when all are leaves, [enum class, [value...]]
        when all are members of one enum; None when some value is not a leaf."""
        kinds = set(map(type, column))
        leaf = self.leaf
        if not kinds <= leaf:
            for t in kinds - leaf:  # enum members and numpy scalars not met yet become leaves on first sight
                if not issubclass(t, Enum | np.generic):
                    return None
                try:
                    self.admit(t, next(v for v in column if type(v) is t))
                except _Fail:
                    return None
            if not kinds <= leaf:
                return None
        if len(kinds) == 1:
            (t,) = kinds
            if issubclass(t, Enum):  # one class: its values in bulk, not an ext value per member
                return [self.global_(t), list(map(attrgetter("_value_"), column))]
        return column

    def set_(self, x: set[Any]) -> list[Any]:
        ref = self.seen(x)
        if ref:
            return ref
        self.remember(x)
        return [SET, list(x) if self.leaves(x) else self.items(x)]

    def frozenset_(self, x: frozenset[Any]) -> list[Any]:
        ref = self.seen(x)
        if ref:
            return ref
        if self.leaves(x):
            return [FROZENSET_P, list(x)]
        return [FROZENSET, self.post_order_items(x)]

    def deque_(self, x: deque[Any]) -> list[Any]:
        ref = self.seen(x)
        if ref:
            return ref
        self.remember(x)
        return [DEQUE, x.maxlen, list(x) if self.leaves(x) else self.items(x)]

    def counter(self, x: Counter[Any]) -> list[Any]:
        ref = self.seen(x)
        if ref:
            return ref
        self.remember(x)
        return [COUNTER, *self.dict_items(x)]

    def defaultdict_(self, x: defaultdict[Any, Any]) -> list[Any]:
        ref = self.seen(x)
        if ref:
            return ref
        self.remember(x)
        factory = x.default_factory
        if factory is not None:
            try:
                factory = self.global_(factory)
            except _Fail as f:
                f.path.append(".default_factory")
                raise
        return [DEFAULTDICT, factory, *self.dict_items(x)]

    # -- sortedcontainers

    def sorted_key(self, x: Any) -> Any:
        key = x.key
        if key is None:
            return None
        try:
            return self.global_(key)
        except _Fail as f:
            f.path.append(".key")
            raise

    def sorted_extras(self, x: Any) -> None:
        extra = _sorted_extra_attrs(x)
        if extra:
            raise _Fail(UNSUPPORTED, f"{_member_name(x)} has attributes its class does not set: {sorted(extra)}")

    def sorted_dict(self, x: SortedDict) -> list[Any]:
        ref = self.seen(x)
        if ref:
            return ref
        self.remember(x)
        self.sorted_extras(x)
        # dict order, not sorted order: the rebuild sorts, and dict-level iteration stays the same
        keys, values = list(dict.keys(x)), list(dict.values(x))
        k = keys if self.leaves(keys) else self.items(keys, lambda i: f".keys()[{i}]")
        v = values if self.leaves(values) else self.items(values, lambda i: f"[{_short(keys[i])}]")
        return [SORTED_DICT, self.gref(type(x)), self.sorted_key(x), k, v]

    def sorted_seq(self, x: SortedList | SortedSet) -> list[Any]:
        ref = self.seen(x)
        if ref:
            return ref
        self.remember(x)
        self.sorted_extras(x)
        items = list(x)
        tag = SORTED_SET if isinstance(x, SortedSet) else SORTED_LIST
        return [tag, self.gref(type(x)), self.sorted_key(x), items if self.leaves(items) else self.items(items)]

    # -- numpy

    def ndarray(self, x: np.ndarray) -> list[Any]:
        ref = self.seen(x)
        if ref:
            return ref
        self.remember(x)
        shape = list(x.shape)
        if x.dtype == np.dtype(object):
            return [NDARRAY_OBJ, shape, self.items(x.reshape(-1).tolist())]
        why = _check_dtype(x.dtype)
        if why:
            raise _Fail(UNSUPPORTED, why)
        return [NDARRAY, x.dtype.str, shape, np.ascontiguousarray(x).tobytes()]

    # -- classes, functions, methods, instances

    def global_(self, x: Any) -> msgpack.ExtType:
        return self.gext(self.gref(x))

    def method(self, m: types.MethodType) -> list[Any]:
        obj, func = m.__self__, m.__func__
        name = getattr(func, "__name__", None)
        if isinstance(obj, type):
            found = _static(obj, name) if isinstance(name, str) else None
            ok = isinstance(found, classmethod) and found.__func__ is func
        else:
            ok = isinstance(name, str) and _static(type(obj), name) is func
        if not ok:
            raise _Fail(UNSUPPORTED, f"bound method {getattr(func, '__qualname__', func)!r} is not its class's {name}")
        try:
            node = obj if type(obj) in self.leaf else self.enc(obj)
        except _Fail as f:
            f.path.append(".__self__")
            raise
        return [METHOD, node, name]

    def ntuple_handler(self, info: _ClassInfo) -> Callable[[Any], Any]:
        def ntuple(x: tuple[Any, ...]) -> list[Any]:
            ref = self.seen(x)
            if ref:
                return ref
            index = self.class_index(info)
            if self.leaves(x):
                return [NTUPLE_P, index, list(x)]
            return [NTUPLE, index, self.post_order_items(x)]

        return ntuple

    def obj_handler(self, info: _ClassInfo) -> Callable[[Any], Any]:
        slots, attrs, names = info.slots, info.attrs, info.slots + info.attrs
        attr_set = frozenset(attrs)
        get_slots = _getter(slots)
        leaf, enc, memo = self.leaf, self.enc, self.memo
        index = -1

        def obj(x: Any) -> list[Any]:
            nonlocal index
            i = memo.get(id(x))
            if i is not None:
                return [REF, i]
            self.remember(x)
            if index < 0:
                index = self.class_index(info)
            try:
                values = list(get_slots(x))
            except AttributeError:  # an unset slot
                values = [getattr(x, n, _ABSENT) for n in slots]
            extra: dict[str, Any] | None = None
            if info.has_dict:
                d = x.__dict__
                mine = [d.get(n, _ABSENT) for n in attrs]
                values += mine
                if len(d) > len(mine) - sum(v is _ABSENT for v in mine):
                    extra = {k: v for k, v in d.items() if k not in attr_set}
            out: list[Any] = [OBJ, index]
            append = out.append
            for name, v in zip(names, values, strict=True):
                if type(v) in leaf:
                    append(v)
                elif v is _ABSENT:
                    append(_MISSING_EXT)
                else:
                    try:
                        append(enc(v))
                    except _Fail as f:
                        f.path.append(f".{name}")
                        raise
            if extra:
                extra_names = list(extra)
                out.append(extra_names)
                out.append(self.items(extra.values(), lambda i: f".{extra_names[i]}"))
            return out

        return obj


def _identity(x: Any) -> Any:
    return x


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if not names:
        return lambda x: ()
    if len(names) == 1:
        name = names[0]
        return lambda x: (getattr(x, name),)
    return attrgetter(*names)


def _format_path(parts: list[str]) -> str:
    path = "".join(reversed(parts)).lstrip(".")
    return path or "(the object itself)"


class _NoGC:
    """Collections paused while a snapshot is built or read: both create or visit every object of
    the state, and the cyclic collector would rescan the growing heap again and again (a third of
    the load time of a 100k-order book)."""

    def __enter__(self) -> None:
        self.was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.was_enabled:
            gc.enable()


def dump_state(obj: object) -> bytes:
    """The snapshot of `obj` and everything it refers to (see the module docstring for the layout).

    Raises SnapshotError(reason="unsupported_type") naming the attribute path of the first value
    the codec does not save (a lambda, an open file, an instance of a class outside orderbook, ...).
    """
    enc = _Encoder()
    with _NoGC():
        try:
            root = obj if type(obj) in enc.leaf else enc.enc(obj)
        except _Fail as f:
            raise SnapshotError(f.reason, f"{_format_path(f.path)}: {f.message}") from None
        except RecursionError:
            raise SnapshotError(UNSUPPORTED, "the object graph nests deeper than Python's recursion limit") from None
        packer = msgpack.Packer(
            default=enc.default, strict_types=True, use_bin_type=True, unicode_errors="surrogatepass", autoreset=True
        )
        try:
            root_bytes = packer.pack(root)  # first: packing the leaves adds the enum members to the table
            table_bytes = packer.pack(enc.table)
        except (ValueError, TypeError, OverflowError) as err:  # msgpack's nesting limit, mostly
            raise SnapshotError(UNSUPPORTED, f"msgpack cannot pack the state: {err}") from None
        z = zlib.compressobj(1)
        body = z.compress(table_bytes) + z.compress(root_bytes) + z.flush()
        return _HEADER.pack(MAGIC, LAYOUT_VERSION, len(table_bytes) + len(root_bytes)) + body


# ---------------------------------------------------------------- loading


class _Corrupt(Exception):
    pass


@dataclass(frozen=True)
class _LoadClass:
    """A table entry of kind 1 as this process will rebuild its instances."""

    cls: type
    names: tuple[str, ...]  # in the snapshot's order
    setters: tuple[Callable[[Any, Any], None] | None, ...]  # a slot's descriptor __set__; None: __dict__
    has_dict: bool
    namedtuple: bool


def _load_class(cls: type, recorded: Any, name: str) -> _LoadClass:
    if (
        not isinstance(recorded, list)
        or not all(type(n) is str for n in recorded)
        or len(set(recorded)) != len(recorded)
    ):
        raise SnapshotError(CORRUPT, f"{name}: attribute names {recorded!r:.80}")
    try:
        info = _classify(cls)
    except SnapshotError as err:
        raise SnapshotError(UNSUPPORTED, f"{name}: {err.args[0]}") from None
    if info.kind not in ("object", "namedtuple"):
        raise SnapshotError(CORRUPT, f"{name} ({info.kind}) has no instances of its own in a snapshot")
    now = info.layout
    same = tuple(recorded) == now if info.kind == "namedtuple" else set(recorded) == set(now)
    if not same:
        added, removed = [n for n in now if n not in recorded], [n for n in recorded if n not in now]
        raise SnapshotError(
            INCOMPATIBLE,
            f"{name} has changed since the snapshot was taken: fields added {added}, removed {removed} "
            f"(snapshot: {list(recorded)}; now: {list(now)})",
        )
    setters = []
    for n in recorded:
        d = _static(cls, n) if n in info.slots else None
        if n in info.slots and not isinstance(d, types.MemberDescriptorType):
            raise SnapshotError(INCOMPATIBLE, f"{name}.{n} is not a slot any more")
        setters.append(d.__set__ if d is not None else None)  # bypasses a frozen dataclass's __setattr__
    return _LoadClass(cls, tuple(recorded), tuple(setters), info.has_dict, info.kind == "namedtuple")


def _enum_member(cls: Any, value: Any, name: str) -> Enum:
    if not (isinstance(cls, type) and issubclass(cls, Enum)):
        raise SnapshotError(CORRUPT, f"{name} is not an enum")
    if type(value) not in _LEAF_TYPES:
        raise SnapshotError(CORRUPT, f"{name}: member value {value!r:.40}")
    member = cls._value2member_map_.get(value)
    if member is None:
        try:
            member = cls(value)  # a Flag's composite value
        except ValueError:
            raise SnapshotError(INCOMPATIBLE, f"{name} has no member of value {value!r} any more") from None
    return member


def _dtype(text: Any) -> np.dtype:
    if type(text) is not str or len(text) > 32:
        raise _Corrupt(f"dtype {text!r:.40}")
    dt = np.dtype(text)
    if dt.str != text or _check_dtype(dt):
        raise _Corrupt(f"dtype {text!r}")
    return dt


def _shape(dims: Any) -> tuple[int, ...]:
    if type(dims) is not list or len(dims) > _MAX_DIMS or not all(type(d) is int and d >= 0 for d in dims):
        raise _Corrupt(f"array shape {dims!r:.60}")
    return tuple(dims)


class _Decoder:
    def __init__(self, table: Any) -> None:
        if not isinstance(table, list):
            raise _Corrupt("the table is not an array")
        self.globals: list[Any] = []
        self.classes: dict[int, _LoadClass] = {}
        for i, entry in enumerate(table):
            if not isinstance(entry, list) or len(entry) != 4 or type(entry[0]) is not int:
                raise _Corrupt(f"table entry {i}")
            kind, module, qualname, extra = entry
            obj = _resolve(module, qualname)
            name = f"{module}:{qualname}"
            if kind == _G_REF:
                self.globals.append(obj)
            elif kind == _G_CLASS:
                if not isinstance(obj, type):
                    raise _Corrupt(f"{name} is not a class")
                self.classes[i] = _load_class(obj, extra, name)
                self.globals.append(obj)
            elif kind == _G_ENUM:
                self.globals.append(_enum_member(obj, extra, name))
            else:
                raise _Corrupt(f"table entry {i} of kind {kind}")
        self.memo: list[Any] = []
        self.handlers: dict[int, Callable[[list[Any]], Any]] = {
            REF: self.ref,
            LIST: self.list_,
            LIST_P: self.list_p,
            TUPLE: self.tuple_,
            TUPLE_P: self.tuple_p,
            DICT: self.dict_,
            DICT_P: self.dict_p,
            SET: self.set_,
            FROZENSET: self.frozenset_,
            FROZENSET_P: self.frozenset_p,
            DEQUE: self.deque_,
            COUNTER: self.counter,
            DEFAULTDICT: self.defaultdict_,
            SORTED_DICT: self.sorted_dict,
            SORTED_LIST: self.sorted_seq,
            SORTED_SET: self.sorted_seq,
            NDARRAY: self.ndarray,
            NDARRAY_OBJ: self.ndarray_obj,
            OBJ: self.obj,
            NTUPLE: self.ntuple,
            NTUPLE_P: self.ntuple,
            METHOD: self.method,
            LIST_OBJS: self.list_objs,
            DICT_OBJS: self.dict_objs,
        }

    def dec(self, node: list[Any]) -> Any:
        return self.handlers[node[0]](node)

    def seq(self, items: Any) -> list[Any]:
        if type(items) is not list:
            raise _Corrupt(f"items are a {type(items).__name__}")
        dec = self.dec
        return [x if type(x) is not list else dec(x) for x in items]

    def value(self, x: Any) -> Any:
        return x if type(x) is not list else self.dec(x)

    def new(self, x: Any) -> Any:
        self.memo.append(x)
        return x

    def global_of(self, x: Any, base: type) -> type:
        if not (isinstance(x, int) and 0 <= x < len(self.globals)):
            raise _Corrupt(f"class index {x!r:.40}")
        cls = self.globals[x]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise _Corrupt(f"{cls!r:.60} is not a {base.__name__}")
        return cls

    @staticmethod
    def function(key: Any) -> Any:
        if key is not None and not isinstance(key, types.FunctionType):
            raise _Corrupt(f"key function {key!r:.60}")
        return key

    # -- nodes

    def ref(self, node: list[Any]) -> Any:
        _, i = node
        if type(i) is not int or not 0 <= i < len(self.memo):
            raise _Corrupt(f"reference {i!r:.40} to nothing")
        return self.memo[i]

    def list_(self, node: list[Any]) -> list[Any]:
        _, items = node
        out = self.new([])
        out.extend(self.seq(items))
        return out

    def list_p(self, node: list[Any]) -> list[Any]:
        _, items = node
        if type(items) is not list:
            raise _Corrupt("list items")
        return self.new(items)

    def tuple_(self, node: list[Any]) -> tuple[Any, ...]:
        _, items = node
        return self.new(tuple(self.seq(items)))

    def tuple_p(self, node: list[Any]) -> tuple[Any, ...]:
        _, items = node
        if type(items) is not list:
            raise _Corrupt("tuple items")
        return tuple(items)

    def dict_(self, node: list[Any]) -> dict[Any, Any]:
        _, keys, values = node
        out = self.new({})
        self.fill(out, keys, values)
        return out

    def fill(self, out: dict[Any, Any], keys: Any, values: Any) -> None:
        k, v = self.seq(keys), self.seq(values)
        if len(k) != len(v):
            raise _Corrupt(f"{len(k)} keys for {len(v)} values")
        dict.update(out, zip(k, v, strict=True))

    def dict_p(self, node: list[Any]) -> dict[Any, Any]:
        _, d = node
        if type(d) is not dict:
            raise _Corrupt("dict of leaves")
        return self.new(d)

    def set_(self, node: list[Any]) -> set[Any]:
        _, items = node
        out = self.new(set())
        out.update(self.seq(items))
        return out

    def frozenset_(self, node: list[Any]) -> frozenset[Any]:
        _, items = node
        return self.new(frozenset(self.seq(items)))

    def frozenset_p(self, node: list[Any]) -> frozenset[Any]:
        _, items = node
        if type(items) is not list:
            raise _Corrupt("frozenset items")
        return frozenset(items)

    def deque_(self, node: list[Any]) -> deque[Any]:
        _, maxlen, items = node
        if maxlen is not None and (type(maxlen) is not int or maxlen < 0):
            raise _Corrupt(f"deque maxlen {maxlen!r:.40}")
        out = self.new(deque(maxlen=maxlen))
        out.extend(self.seq(items))
        return out

    def counter(self, node: list[Any]) -> Counter[Any]:
        _, keys, values = node
        out = self.new(Counter())
        self.fill(out, keys, values)
        return out

    def defaultdict_(self, node: list[Any]) -> defaultdict[Any, Any]:
        _, factory, keys, values = node
        if factory is not None and not isinstance(factory, type | types.FunctionType):
            raise _Corrupt(f"defaultdict factory {factory!r:.60}")
        out = self.new(defaultdict(factory))
        self.fill(out, keys, values)
        return out

    def sorted_dict(self, node: list[Any]) -> SortedDict:
        _, cls_index, key, keys, values = node
        cls = self.global_of(cls_index, SortedDict)
        key = self.function(key)
        out = self.new(cls(key) if key is not None else cls())
        k, v = self.seq(keys), self.seq(values)
        if len(k) != len(v):
            raise _Corrupt(f"{len(k)} keys for {len(v)} values")
        out.update(zip(k, v, strict=True))
        return out

    def sorted_seq(self, node: list[Any]) -> SortedList | SortedSet:
        tag, cls_index, key, items = node
        cls = self.global_of(cls_index, SortedSet if tag == SORTED_SET else SortedList)
        key = self.function(key)
        out = self.new(cls(key=key) if key is not None else cls())
        out.update(self.seq(items))
        return out

    def ndarray(self, node: list[Any]) -> np.ndarray:
        _, dtype_text, dims, raw = node
        dt, shape = _dtype(dtype_text), _shape(dims)
        if type(raw) is not bytes or math.prod(shape) * dt.itemsize != len(raw):
            raise _Corrupt(f"{len(raw) if type(raw) is bytes else raw!r:.20} bytes for a {shape} {dt} array")
        return self.new(np.frombuffer(raw, dtype=dt).reshape(shape).copy())

    def ndarray_obj(self, node: list[Any]) -> np.ndarray:
        _, dims, items = node
        shape = _shape(dims)
        if type(items) is not list or math.prod(shape) != len(items):
            raise _Corrupt(f"object array of shape {shape} with the wrong number of items")
        out = self.new(np.empty(shape, dtype=object))
        flat = out.reshape(-1)  # a view: np.empty is C-contiguous
        for i, v in enumerate(self.seq(items)):
            flat[i] = v
        return out

    def load_class(self, index: Any) -> _LoadClass:
        c = self.classes.get(index) if type(index) is int else None
        if c is None:
            raise _Corrupt(f"instance of table entry {index!r:.40}, which is not a class with fields")
        return c

    def obj(self, node: list[Any]) -> Any:
        c = self.load_class(node[1])
        if c.namedtuple:
            raise _Corrupt(f"{c.cls.__qualname__} instance as a plain object")
        n = len(c.names)
        if len(node) not in (n + 2, n + 4):
            raise _Corrupt(f"{c.cls.__qualname__}: {len(node) - 2} values for {n} fields")
        cls = c.cls
        x = self.new(cls.__new__(cls))
        dec = self.dec
        d = x.__dict__ if c.has_dict else None
        for name, setter, v in zip(c.names, c.setters, node[2 : n + 2], strict=True):
            if v is _MISSING:
                continue
            if type(v) is list:
                v = dec(v)
            if setter is not None:
                setter(x, v)
            else:
                d[name] = v  # type: ignore[index]  # straight into __dict__, as pickle does
        if len(node) == n + 4:
            names, values = node[n + 2], self.seq(node[n + 3])
            if d is None or type(names) is not list or len(names) != len(values):
                raise _Corrupt(f"{cls.__qualname__}: extra attributes")
            for name, v in zip(names, values, strict=True):
                if type(name) is not str:
                    raise _Corrupt(f"{cls.__qualname__}: attribute name {name!r:.40}")
                d[name] = v
        return x

    def obj_run(self, index: Any, columns: list[Any]) -> list[Any]:
        """The instances of a LIST_OBJS / DICT_OBJS node, numbered in order."""
        c = self.load_class(index)
        if c.namedtuple or c.has_dict or None in c.setters or len(columns) != len(c.names) or not columns:
            raise _Corrupt(f"{c.cls.__qualname__}: a run of {len(columns)} columns")
        columns = [self.column(col) if type(col) is list else col for col in columns]
        n = len(columns[0])
        if not all(type(col) is list and len(col) == n for col in columns):
            raise _Corrupt(f"{c.cls.__qualname__}: columns of different lengths")
        cls = c.cls
        new = cls.__new__
        objs = [new(cls) for _ in range(n)]
        self.memo.extend(objs)
        for setter, col in zip(c.setters, columns, strict=True):
            deque(map(setter, objs, col), maxlen=0)  # type: ignore[arg-type]  # a C loop over the column
        return objs

    @staticmethod
    def column(col: list[Any]) -> list[Any]:
        """A run's column: its leaves, or [enum class, [value...]] turned back into members."""
        if len(col) == 2 and isinstance(col[0], type):  # a class is never a leaf: this is the enum form
            cls, values = col
            if not issubclass(cls, Enum) or type(values) is not list:
                raise _Corrupt(f"column of {cls!r:.60}")
            try:
                return list(map(cls._value2member_map_.__getitem__, values))
            except (KeyError, TypeError):  # a Flag's composite value, a member gone, or garbage
                name = f"{cls.__module__}:{cls.__qualname__}"
                return [_enum_member(cls, v, name) for v in values]
        return col

    def list_objs(self, node: list[Any]) -> list[Any]:
        out = self.new([])
        out.extend(self.obj_run(node[1], node[2:]))
        return out

    def dict_objs(self, node: list[Any]) -> dict[Any, Any]:
        out = self.new({})
        keys = self.seq(node[1])
        objs = self.obj_run(node[2], node[3:])
        if len(keys) != len(objs):
            raise _Corrupt(f"{len(keys)} keys for {len(objs)} values")
        dict.update(out, zip(keys, objs, strict=True))
        return out

    def ntuple(self, node: list[Any]) -> tuple[Any, ...]:
        tag, index, items = node
        c = self.load_class(index)
        if not c.namedtuple:
            raise _Corrupt(f"{c.cls.__qualname__} as a NamedTuple")
        values = self.seq(items)
        if len(values) != len(c.names):
            raise _Corrupt(f"{c.cls.__qualname__}: {len(values)} values for {len(c.names)} fields")
        out = tuple.__new__(c.cls, values)
        return out if tag == NTUPLE_P else self.new(out)

    def method(self, node: list[Any]) -> types.MethodType:
        _, target, name = node
        obj = self.value(target)
        if type(name) is not str:
            raise _Corrupt(f"method name {name!r:.40}")
        if isinstance(obj, type):
            found = _static(obj, name)
            if not isinstance(found, classmethod):
                raise SnapshotError(INCOMPATIBLE, f"{obj.__qualname__}.{name} is not a classmethod any more")
            return types.MethodType(found.__func__, obj)
        found = _static(type(obj), name)
        if not isinstance(found, types.FunctionType):
            raise SnapshotError(INCOMPATIBLE, f"{type(obj).__qualname__}.{name} is not a method any more")
        return types.MethodType(found, obj)


def _inflate(blob: bytes | bytearray | memoryview, max_bytes: int) -> bytes:
    view = memoryview(blob)
    if len(view) < _HEADER.size:
        raise SnapshotError(CORRUPT, f"{len(view)} bytes: shorter than the {_HEADER.size}-byte header")
    magic, version, size = _HEADER.unpack(view[: _HEADER.size])
    if magic != MAGIC:
        raise SnapshotError(CORRUPT, f"not a snapshot: it starts with {bytes(magic)!r}, not {MAGIC!r}")
    if version != LAYOUT_VERSION:
        raise SnapshotError(INCOMPATIBLE, f"layout version {version}; this code reads version {LAYOUT_VERSION} only")
    if size > max_bytes:
        raise SnapshotError(TOO_LARGE, f"the body inflates to {size:,} bytes, over the {max_bytes:,}-byte limit")
    z = zlib.decompressobj()
    try:
        body = z.decompress(view[_HEADER.size :], size + 1)  # at most one byte past the declared size
    except zlib.error as err:
        raise SnapshotError(CORRUPT, f"the body does not inflate: {err}") from None
    if len(body) != size or not z.eof or z.unused_data or z.unconsumed_tail:
        what = "is cut short" if not z.eof and len(body) < size else "does not match its declared length"
        raise SnapshotError(CORRUPT, f"the body {what} ({len(body):,} bytes inflated, {size:,} declared)")
    return body


def load_state(blob: bytes | bytearray | memoryview, *, max_bytes: int = MAX_STATE_BYTES) -> object:
    """The object `dump_state` saved in `blob`. Reads nothing but the blob, imports nothing outside
    `orderbook.*`, and raises SnapshotError for anything it cannot rebuild exactly."""
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise TypeError(f"load_state needs bytes, not {type(blob).__name__}")
    body = _inflate(blob, max_bytes)
    resolved: list[Any] | None = None

    def ext_hook(code: int, data: bytes) -> Any:
        if code == _EXT_GLOBAL:
            if resolved is None:
                raise _Corrupt("a global inside the table")
            return resolved[int.from_bytes(data, "big")]
        if code == _EXT_BIGINT:
            return int.from_bytes(data, "big", signed=True)
        if code == _EXT_NPSCALAR:
            text, sep, raw = data.partition(b"\0")
            dt = _dtype(text.decode("ascii"))
            if not sep or len(raw) != dt.itemsize:
                raise _Corrupt("numpy scalar")
            return np.frombuffer(raw, dtype=dt)[0]
        if code == _EXT_MISSING and not data:
            return _MISSING
        raise _Corrupt(f"ext type {code}")

    with _NoGC():
        try:
            unpacker = msgpack.Unpacker(
                ext_hook=ext_hook,
                raw=False,
                strict_map_key=False,
                use_list=True,
                max_buffer_size=max(len(body), 1),
                unicode_errors="surrogatepass",
            )
            unpacker.feed(body)
            decoder = _Decoder(unpacker.unpack())
            resolved = decoder.globals
            root = decoder.value(unpacker.unpack())
            if unpacker.tell() != len(body):
                raise _Corrupt(f"{len(body) - unpacker.tell()} bytes after the root")
            return root
        except SnapshotError:
            raise
        except msgpack.OutOfData:
            raise SnapshotError(CORRUPT, "the body ends inside a value") from None
        except _Corrupt as err:
            raise SnapshotError(CORRUPT, str(err)) from None
        except RecursionError:
            raise SnapshotError(CORRUPT, "the body nests deeper than Python's recursion limit") from None
        except Exception as err:  # whatever malformed input makes msgpack, numpy or a container raise
            raise SnapshotError(CORRUPT, f"malformed body: {type(err).__name__}: {err}") from None
