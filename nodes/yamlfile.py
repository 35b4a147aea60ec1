"""YAML loading that remembers where every value came from, for error messages with lines."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from aggregator.errors import BadInput

Where = tuple[str | int, ...]


class FileError(BadInput):
    """A problem in a user's file: message names the file, the place and the fix."""


class FrameworkFileError(FileError):
    """A framework file (YAML or the Excel template) that cannot be read into a framework: a
    :class:`FileError` (the message names the file, the place and the fix) with a stable ``code``
    (``framework_file.*``, ``workbook.*``)."""

    default_code = "framework_file.invalid"


@dataclass
class Located:
    path: Path
    data: Any
    lines: dict[Where, int | str] = field(default_factory=dict)  # a line number, or a place such as 指标体系!G5
    problems: list[str] = field(default_factory=list)  # collected so that one pass reports them all
    # Where a mapping key itself is written: a key whose value is a block mapping sits on the line
    # above that value, and "this key is wrong" must point at the key.
    key_lines: dict[Where, int] = field(default_factory=dict)
    code: str | None = None  # the FileError code of this file's errors unless one is given (None: FileError's default)

    def at(self, where: Where, *, key: bool = False) -> str:
        """``file:line`` (or ``file sheet!cell``) of the closest known place at or above ``where``;
        with ``key``, the line of the key ``where`` names rather than of its value."""
        if key and where in self.key_lines:
            return f"{self.path}:{self.key_lines[where]}"
        w = where
        while w and w not in self.lines:
            w = w[:-1]
        line = self.lines.get(w)
        if isinstance(line, str):
            return f"{self.path} {line}"
        return f"{self.path}:{line}" if line else str(self.path)

    def error(self, where: Where, message: str, *, code: str | None = None, key: bool = False) -> FileError:
        dotted = ".".join(str(p) for p in where)
        return FileError(f"{self.at(where, key=key)}: {dotted + ': ' if dotted else ''}{message}", code=code or self.code)


def load(path: Path, *, code: str | None = None) -> Located:
    """``code``: the error code for every problem found in this file, including unreadable or malformed YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileError(f"{path}: 文件不存在 (file not found)", code=code) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FileError(f"{path}: 无法读取 (cannot read): {exc}", code=code) from None
    try:
        # The reader checks every character as it is built: a control character is refused here.
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise FileError(f"{path}:{line}: YAML 含不可打印字符 U+{exc.character:04X}，请删除 "
                        f"(unprintable character U+{exc.character:04X}; remove it)", code=code) from None
    try:
        root = loader.get_single_node()
        located = Located(path, None, code=code)
        located.data = _convert(loader, root, (), located.lines, located.key_lines) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        place = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise FileError(f"{place}: YAML 格式错误 (malformed YAML): {exc.problem or exc.context}；"
                        "请检查缩进、冒号和引号 (check indentation, colons and quotes)", code=code) from None
    except yaml.YAMLError as exc:
        raise FileError(f"{path}: YAML 格式错误 (malformed YAML): {exc}", code=code) from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise FileError(f"{path}: YAML 嵌套过深，请减少嵌套层级 (nested too deep; a framework needs a few levels)",
                        code=code) from None
    finally:
        loader.dispose()
    return located


def _convert(loader: yaml.SafeLoader, node: Node, where: Where, lines: dict[Where, int | str],
             key_lines: dict[Where, int], seen: set[int] | None = None) -> Any:
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
            key_lines[(*where, key)] = key_node.start_mark.line + 1
            out[key] = _convert(loader, value_node, (*where, key), lines, key_lines, seen)
        return out
    if isinstance(node, SequenceNode):
        return [_convert(loader, item, (*where, i), lines, key_lines, seen) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
