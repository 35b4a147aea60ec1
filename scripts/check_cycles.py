"""Fail if any import cycle exists among the project's modules (function-level imports included).

import-linter's contracts check the layers; this checks the rest of "nothing imports its
caller": every strongly connected component of the module import graph must be one module.
Uses grimp, the graph builder import-linter runs on. Exit 1, naming each cycle, if one exists.
"""

from __future__ import annotations

import sys

import grimp

PACKAGES = ("aggregator", "sync", "nodes", "gateway", "proto")


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's strongly connected components of size > 1 (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(root: str) -> None:
        nonlocal counter
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
            if low[module] == index[module]:
                component = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    component.append(m)
                    if m == module:
                        break
                if len(component) > 1 or module in graph.find_modules_directly_imported_by(module):
                    found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def main() -> int:
    graph = grimp.build_graph(*PACKAGES, include_external_packages=False)
    found = cycles(graph)
    for component in found:
        print("import cycle (循环导入):", " ⇄ ".join(component))
        for a in component:
            for b in component:
                if a != b and graph.direct_import_exists(importer=a, imported=b):
                    lines = graph.get_import_details(importer=a, imported=b)
                    where = ", ".join(f"line {d['line_number']}" for d in lines)
                    print(f"    {a} → {b} ({where})")
    if found:
        return 1
    print(f"no import cycles among {len(graph.modules)} modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
