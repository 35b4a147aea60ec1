"""YAML loading that remembers where every value came from, for error messages with lines."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Where = tuple[str | int, ...]


class FileError(ValueError):
    """A problem in a user's file: message names the file, the place and the fix."""


@dataclass
class Located:
    path: Path
    data: Any
    lines: dict[Where, int | str] = field(default_factory=dict)  # a line number, or a place such as 指标体系!G5
    problems: list[str] = field(default_factory=list)  # collected so that one pass reports them all

    def at(self, where: Where) -> str:
        """``file:line`` (or ``file sheet!cell``) of the closest known place at or above ``where``."""
        w = where
        while w and w not in self.lines:
            w = w[:-1]
        line = self.lines.get(w)
        if isinstance(line, str):
            return f"{self.path} {line}"
        return f"{self.path}:{line}" if line else str(self.path)

    def error(self, where: Where, message: str) -> FileError:
        dotted = ".".join(str(p) for p in where)
        return FileError(f"{self.at(where)}: {dotted + ': ' if dotted else ''}{message}")


def load(path: Path) -> Located:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileError(f"{path}: 文件不存在 (file not found)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FileError(f"{path}: 无法读取 (cannot read): {exc}") from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        located = Located(path, None)
        located.data = _convert(loader, root, (), located.lines) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        place = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise FileError(f"{place}: YAML 格式错误 (malformed YAML): {exc.problem or exc.context}；"
                        "请检查缩进、冒号和引号 (check indentation, colons and quotes)") from None
    except yaml.YAMLError as exc:
        raise FileError(f"{path}: YAML 格式错误 (malformed YAML): {exc}") from None
    finally:
        loader.dispose()
    return located


def _convert(loader: yaml.SafeLoader, node: Node, where: Where, lines: dict[Where, int | str],
             seen: set[int] | None = None) -> Any:
    seen = set() if seen is None else seen
    if id(node) in seen:
        # Anchors/aliases would let a small file expand without bound (or refer to itself).
        raise yaml.MarkedYAMLError(problem="不支持 YAML 锚点与别名 (&/*)，请展开书写 (anchors and aliases are not supported)",
                                   problem_mark=node.start_mark)
    seen.add(id(node))
    lines[where] = node.start_mark.line + 1
    if isinstance(node, MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True) if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str | int):
                raise yaml.MarkedYAMLError(problem="键必须是文字 (keys must be text)", problem_mark=key_node.start_mark)
            key = str(key)
            if key in out:
                raise yaml.MarkedYAMLError(problem=f"键 {key!r} 重复 (duplicate key)", problem_mark=key_node.start_mark)
            out[key] = _convert(loader, value_node, (*where, key), lines, seen)
        return out
    if isinstance(node, SequenceNode):
        return [_convert(loader, item, (*where, i), lines, seen) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
