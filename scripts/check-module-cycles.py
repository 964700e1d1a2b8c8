#!/usr/bin/env python3
"""Checks that a crate's modules import each other without cycles.

    scripts/check-module-cycles.py [SRC_DIR ...]    (default: hypervisor/src)

Builds the graph of `crate::` references between the modules of each source tree (one
node per file; `mod.rs` is its folder's module; comments and `#[cfg(test)] mod tests`
blocks are left out), follows a module's `pub use` re-exports to the submodule that
defines the name, and reports every strongly connected component of more than one module
with the edges inside it. References between a module and its own ancestors or
descendants are not edges (a folder's `mod.rs` declares its children). Exit status 1 when
a cycle exists.
"""
import os
import re
import sys


def modules(src):
    found = {}
    for folder, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            parts = os.path.relpath(os.path.join(folder, name), src)[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            if parts in (["lib"], ["main"]):
                continue
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                text = f.read()
            text = re.sub(r"#\[cfg\(test\)\]\s*mod tests\s*\{.*", "", text, flags=re.S)
            text = re.sub(r"//[^\n]*", "", text)
            found["::".join(parts)] = text
    return found


def reexports(mods):
    """For each module, the names it re-exports and the child module that defines them."""
    table = {}
    for mod, text in mods.items():
        named, globs = {}, []
        for child, items in re.findall(r"pub use (\w+)::\{([^}]*)\}", text):
            for item in items.split(","):
                item = item.strip().split(" as ")[-1].strip()
                if item and item != "self":
                    named[item] = child
        for child, item in re.findall(r"pub use (\w+)::(\w+);", text):
            named[item] = child
        globs = re.findall(r"pub use (\w+)::\*;", text)
        table[mod] = (named, globs)
    return table


def resolve(path, mods, table):
    segs = path.split("::")
    for n in range(len(segs), 0, -1):
        module = "::".join(segs[:n])
        if module not in mods:
            continue
        if n < len(segs):
            named, globs = table[module]
            name = segs[n]
            child = named.get(name) or (globs[0] if len(globs) == 1 else None)
            if child and f"{module}::{child}" in mods:
                return f"{module}::{child}"
        return module
    return None


def graph(mods):
    table = reexports(mods)
    edges = {m: set() for m in mods}
    for mod, text in mods.items():
        for use in re.findall(r"crate::([a-z_0-9:]+(?:::\{[^}]*\})?)", text):
            base, _, inner = use.partition("::{")
            targets = [base]
            for item in inner.rstrip("}").split(","):
                item = item.strip().split(" as ")[0].strip()
                if item and item != "self":
                    targets.append(f"{base}::{item}")
            for target in targets:
                module = resolve(target, mods, table)
                if module is None or module == mod:
                    continue
                if mod.startswith(module + "::") or module.startswith(mod + "::"):
                    continue
                edges[mod].add(module)
    return edges


def cycles(edges):
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def main(argv):
    roots = argv[1:] or [os.path.join(os.path.dirname(__file__), "..", "hypervisor", "src")]
    status = 0
    for src in roots:
        mods = modules(src)
        edges = graph(mods)
        found = cycles(edges)
        for component in found:
            status = 1
            print(f"module cycle in {src}: {' '.join(component)}")
            for v in component:
                print(f"    {v} -> {', '.join(sorted(w for w in edges[v] if w in component))}")
        print(f"{src}: {len(mods)} modules, {sum(map(len, edges.values()))} imports, "
              f"{len(found)} cycle(s)")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
