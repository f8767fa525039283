"""The one YAML loader of alakazam: safe, bounded, strict.

Conventions (pinned by tests/test_reliability.py):

* Built on ``yaml.SafeLoader`` (no Python objects).
* Aliases are bounded: at most :data:`MAX_ALIASES` alias uses, and the document expanded through its
  aliases may hold at most :data:`MAX_NODES` nodes, computed on the node graph without expanding it,
  so a "billion laughs" file is refused in milliseconds instead of eating gigabytes.
* Duplicate keys in a mapping are an error naming the key and its line.
* Numbers in any YAML form are numbers: ``1e-10``, ``1E5``, ``+2.5e3`` (YAML 1.2 floats without a dot,
  which PyYAML's YAML 1.1 resolver reads as strings), besides ``1.0e-10``, ``.inf``, ``.nan``.
* YAML 1.1's base-60 numbers are strings, as in YAML 1.2: ``spw: 1:3`` (SPW 1, channel 3) and
  ``timerange: 12:30:00`` keep their CASA meaning (PyYAML reads them as 63 and 45000).
* The file must be a readable UTF-8 text file of at most :data:`MAX_BYTES`; a directory, a binary file
  or undecodable bytes are clear errors.

Every failure is an :class:`~alakazam.errors.AlakazamError` naming the file (and line/column when the
parser gives one).
"""

from __future__ import annotations

import os
import re

import yaml

from .errors import AlakazamError

MAX_ALIASES = 64
MAX_NODES = 100_000
MAX_BYTES = 10 * 1024 * 1024

_FLOAT_12 = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class _Loader(yaml.SafeLoader):
    def __init__(self, stream):
        super().__init__(stream)
        self._n_alias = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._n_alias += 1
            if self._n_alias > MAX_ALIASES:
                ev = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_ALIASES} aliases (*anchor uses); refused", ev.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue            # reported by the base class
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"duplicate key {key!r} (first at line {seen[key].line + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


# a private copy of the resolver table (add_implicit_resolver would append to SafeLoader's lists)
_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789"))
# YAML 1.1's base-60 numbers are strings (YAML 1.2 has none): 1:3 -> '1:3', not 63
_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
for _c in "-+0123456789":
    _Loader.yaml_implicit_resolvers.setdefault(_c, []).insert(0, ("tag:yaml.org,2002:str", _SEXAGESIMAL))


def _expanded_size(node, memo, stack):
    """Nodes of ``node`` expanded through its aliases (shared nodes counted once per use)."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in stack:             # a recursive alias: infinite when expanded
        return MAX_NODES + 1
    stack.add(key)
    n = 1
    if isinstance(node, yaml.SequenceNode):
        for c in node.value:
            n += _expanded_size(c, memo, stack)
            if n > MAX_NODES:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            n += _expanded_size(k, memo, stack) + _expanded_size(v, memo, stack)
            if n > MAX_NODES:
                break
    stack.discard(key)
    memo[key] = n
    return n


def _where(e):
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def loads(text, name="<string>"):
    """Parse YAML text under the module's rules."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, set()) > MAX_NODES:
            raise AlakazamError(f"config: {name} expands to more than {MAX_NODES} YAML nodes through its "
                                "aliases (&anchor / *alias); refused")
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e)
        raise AlakazamError(f"config: {name} is not valid YAML{_where(e)}: {problem}") from None
    except RecursionError:
        raise AlakazamError(f"config: {name} is nested too deeply") from None
    finally:
        loader.dispose()


def load(path):
    """Read and parse a YAML file under the module's rules."""
    p = str(path)
    if not os.path.exists(p):
        raise AlakazamError(f"config: {p!r} does not exist")
    if os.path.isdir(p):
        raise AlakazamError(f"config: {p!r} is a directory, expected a YAML file")
    try:
        with open(p, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as e:
        raise AlakazamError(f"config: cannot read {p!r} ({e.strerror})") from None
    if len(raw) > MAX_BYTES:
        raise AlakazamError(f"config: {p!r} is larger than {MAX_BYTES // 2**20} MB; not a config file")
    if b"\0" in raw:
        raise AlakazamError(f"config: {p!r} is a binary file, expected a YAML text file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AlakazamError(f"config: {p!r} is not UTF-8 text (byte {e.start}); expected a YAML "
                            "file") from None
    return loads(text, p)
