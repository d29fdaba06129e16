"""YAML as data, and only data: the loader every site file goes through (``validate``, the inventory plugin).

PyYAML's SafeLoader with four limits: the text's size, the nesting depth (PyYAML composes recursively: 5,000
levels end in RecursionError), the number of nodes once aliases are expanded (a billion-laughs file is a few
lines that expand to 10^9 nodes downstream) and no key twice in a mapping (YAML says keys are unique; PyYAML
keeps the last one silently, so a second ``debian:`` would replace the mirror).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .problems import Problem, SiteInvalid, field_path

MAX_SITE_CHARACTERS = 4 * 1024 * 1024  # riga-1 (1,024 GPUs) is under 5 kB
MAX_DEPTH = 64                          # riga-1 nests 6 deep
MAX_NODES = 1_000_000                   # after alias expansion; riga-1 has about 1,400
MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKey(ConstructorError):
    """A key declared twice in one mapping: its node and where it was declared first."""

    def __init__(self, mapping: MappingNode, key: Any, first: yaml.Mark, second: yaml.Mark):
        self.mapping, self.key, self.first, self.second = mapping, key, first, second
        super().__init__(None, None, f"duplicate key {key!r}", second)


class SiteLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting deeper than MAX_DEPTH and a key twice in one mapping."""

    def __init__(self, stream: Any):
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
        if isinstance(node, MappingNode):
            seen: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, ScalarNode):
                    continue   # complex keys are refused by the model
                # a merge key itself appears once; the keys it brings in may be overridden
                key = "<<" if key_node.tag == MERGE_TAG else self.construct_object(key_node, deep=True)
                if key in seen:
                    raise DuplicateKey(node, key, seen[key], key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


def load_yaml(text: str, source: str = "<site>") -> Any:
    """The data in ``text``; raises SiteInvalid (the field named) for broken YAML or any limit exceeded."""
    if len(text) > MAX_SITE_CHARACTERS:
        raise SiteInvalid(source, [Problem("", f"the site file is longer than {MAX_SITE_CHARACTERS:,} characters, "
                                               "more than any site needs")])
    loader = None
    try:
        loader = SiteLoader(text)      # its reader refuses non-printable characters here
        root = loader.get_single_node()
        if root is None:
            return None
        paths = _node_paths(root, source)
        try:
            return loader.construct_document(root)
        except DuplicateKey as err:
            path = field_path(*paths.get(id(err.mapping), ()), _key_part(err.key))
            raise SiteInvalid(source, [Problem(path, f"key {err.key!r} is declared twice (lines {err.first.line + 1} and "
                                                     f"{err.second.line + 1}); a mapping's keys are unique: keep one")]) from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        reason = getattr(err, "problem", None) or str(err)
        raise SiteInvalid(source, [Problem("", f"not valid YAML{at}: {reason}")]) from None
    except ValueError as err:                   # a scalar YAML resolves but Python cannot build: a 5,000-digit integer
        reason = ("an integer longer than 4300 digits" if "integer string conversion" in str(err)
                  else f"a value that cannot be read ({str(err)[:100]})")
        raise SiteInvalid(source, [Problem("", f"not valid site data: {reason}")]) from None
    finally:
        if loader is not None:
            loader.dispose()


def _key_part(key: Any) -> str | int:
    return key if isinstance(key, str) else str(key)


def _node_paths(root: Node, source: str) -> dict[int, tuple]:
    """The path of each mapping node (its first, with aliases expanded); raises SiteInvalid past MAX_NODES or
    MAX_DEPTH (an alias inside its own anchor nests without end)."""
    paths: dict[int, tuple] = {}
    count = 0
    stack: list[tuple[Node, tuple]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        count += 1
        if len(path) > MAX_DEPTH:
            raise SiteInvalid(source, [Problem(field_path(*path[:MAX_DEPTH]), f"the site file nests more than {MAX_DEPTH} "
                                                                              "levels deep once its aliases are expanded")])
        if count > MAX_NODES:
            at = node.start_mark.line + 1
            raise SiteInvalid(source, [Problem(field_path(*path), f"the site file expands to more than {MAX_NODES:,} "
                                                                  f"values (aliases near line {at}); a site file is data, "
                                                                  "not a generator: write the values out")])
        if isinstance(node, MappingNode):
            paths.setdefault(id(node), path)
            for key, value in node.value:
                part = _key_part(key.value) if isinstance(key, ScalarNode) else "?"
                stack.append((key, path))
                stack.append((value, path if key.tag == MERGE_TAG else (*path, part)))
        elif isinstance(node, SequenceNode):
            stack.extend((item, (*path, i)) for i, item in enumerate(node.value))
    return paths
