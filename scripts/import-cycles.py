#!/usr/bin/env python3
"""Report import cycles between the source files of the atex crate.

Usage: scripts/import-cycles.py [--edges] [--strict] [SRC_DIR]

Builds the module tree from `mod name;` declarations (starting at src/lib.rs and every
src/bin/*/main.rs), then gives every file an edge to each file whose items it names:
`use` declarations (nested braces, renames, globs) and paths written in the code
(`crate::a::B`, `super::B`, `child::B`, `alias::B` for a module brought in by `use`).
A path is resolved to the file that *defines* the item: re-exports (`pub use`) are followed,
so naming `crate::fmf::Error` counts as a dependency on the file defining `Error`, not on
`fmf/mod.rs`. Comments, doc comments and string literals are ignored.

A folder's `mod.rs` (or `lib.rs`) re-exporting items of its own descendants is its table of
contents, not a dependency; those re-exports make no edge unless `--strict` is given.

Prints every strongly connected component of more than one file (each is an import cycle,
with the edges inside it), then every cycle between sibling modules of one folder that is not
already a cycle between two files (`fmf/dump.rs -> jsonfmt.rs` and `jsonfmt.rs -> fmf/value.rs`
make the modules `fmf` and `jsonfmt` import each other). Exits 1 if there is any cycle;
prints "no import cycles" and exits 0 otherwise. `--edges` also prints every edge.
"""

import os
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(src):
    """Blank comments, string and char literals, keeping offsets and newlines."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', src[i:]) and (i == 0 or not re.match(r"[A-Za-z0-9_]", src[i - 1])):
            hashes = re.match(r"r(#*)\"", src[i:]).group(1)
            end = src.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", src[i:end]))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", src[i:])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:  # a lifetime or label
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def split_top(s, sep=","):
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def expand_use(tree, prefix=()):
    """Yield (segments, alias) for a use tree; alias is '*' for globs."""
    tree = re.sub(r"\s+", " ", tree).strip()
    if tree.startswith("::"):
        tree = tree[2:]
    m = re.match(r"^(.*?)\{(.*)\}$", tree, re.S)
    if m and "{" not in m.group(1):
        head = [s for s in m.group(1).split("::") if s.strip()]
        for part in split_top(m.group(2)):
            yield from expand_use(part, prefix + tuple(s.strip() for s in head))
        return
    alias = None
    am = re.match(r"^(.*) as (" + IDENT + r")$", tree)
    if am:
        tree, alias = am.group(1), am.group(2)
    segs = tuple(s.strip() for s in tree.split("::") if s.strip())
    segs = prefix + segs
    if segs and segs[-1] == "*":
        yield segs[:-1], "*"
    elif segs and segs[-1] == "self":
        yield segs[:-1], alias or segs[-2]
    elif segs:
        yield segs, alias or segs[-1]


class Crate:
    def __init__(self, src_dir):
        self.src_dir = src_dir
        self.files = {}  # file -> stripped text
        self.modules = {}  # module path tuple -> (file, start, end) span in that file
        self.children = {}  # module path -> set of child names
        self.uses = []  # (file, module, segments, alias, is_pub, pos)
        self.reexports = {}  # module -> {name: (segments, from_module)}
        self.globs = {}  # module -> [(segments, from_module)]
        self.crates = {}  # crate root name -> module prefix
        self.use_spans = {}  # file -> [(start, end)] of its use declarations

    def load(self, root_file, root):
        self._load_file(root_file, root, is_root=True)

    def _load_file(self, path, mod, is_root=False):
        with open(path, encoding="utf-8") as f:
            text = strip(f.read())
        self.files[path] = text
        self.modules[mod] = (path, 0, len(text))
        self.children.setdefault(mod, set())
        base = os.path.dirname(path)
        stem = os.path.splitext(os.path.basename(path))[0]
        if not (is_root or stem == "mod"):
            base = os.path.join(base, stem)
        self._scan_mods(path, text, mod, base, 0, len(text))

    def _scan_mods(self, path, text, mod, base, start, end):
        pat = re.compile(r"\bmod\s+(" + IDENT + r")\s*([;{])")
        pos = start
        while True:
            m = pat.search(text, pos, end)
            if not m:
                break
            name, kind = m.group(1), m.group(2)
            child = mod + (name,)
            self.children.setdefault(mod, set()).add(name)
            if kind == ";":
                cand = [os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")]
                found = [c for c in cand if os.path.exists(c)]
                if found:
                    self._load_file(found[0], child)
                pos = m.end()
            else:
                depth, j = 1, m.end()
                while j < end and depth:
                    if text[j] == "{":
                        depth += 1
                    elif text[j] == "}":
                        depth -= 1
                    j += 1
                self.modules[child] = (path, m.end(), j)
                self.children.setdefault(child, set())
                self._scan_mods(path, text, child, os.path.join(base, name), m.end(), j)
                pos = j

    def module_at(self, path, pos):
        best = None
        for mod, (f, s, e) in self.modules.items():
            if f == path and s <= pos <= e and (best is None or len(mod) > len(best)):
                best = mod
        return best

    def collect_uses(self):
        pat = re.compile(r"(\bpub(?:\s*\([^)]*\))?\s+)?\buse\s+([^;]+);")
        for path, text in self.files.items():
            for m in pat.finditer(text):
                mod = self.module_at(path, m.start())
                self.use_spans.setdefault(path, []).append((m.start(), m.end()))
                for segs, alias in expand_use(m.group(2)):
                    is_pub = bool(m.group(1))
                    self.uses.append((path, mod, segs, alias, is_pub, m.start()))
                    if is_pub:
                        if alias == "*":
                            self.globs.setdefault(mod, []).append((segs, mod))
                        else:
                            self.reexports.setdefault(mod, {})[alias] = (segs, mod)

    def absolute(self, segs, mod):
        """Turn a path written in module `mod` into (absolute module-rooted segments) or None."""
        if not segs:
            return None
        first = segs[0]
        if first == "crate" or first == "$crate":
            return (mod[0],) + tuple(segs[1:])
        if first == "self":
            return mod + tuple(segs[1:])
        if first == "super":
            cur, rest = mod, list(segs)
            while rest and rest[0] == "super":
                cur, rest = cur[:-1], rest[1:]
            return cur + tuple(rest)
        if first in self.children.get(mod, ()):
            return mod + tuple(segs)
        if first in self.crates:
            return self.crates[first] + tuple(segs[1:])
        return None

    def resolve(self, abs_segs, depth=0):
        """Return (kind, file): kind 'mod' if the path names a module, 'item' otherwise."""
        if abs_segs is None or depth > 20:
            return None
        mod = abs_segs[:1]
        if mod not in self.modules:
            return None
        rest = list(abs_segs[1:])
        while rest and rest[0] in self.children.get(mod, ()):
            mod, rest = mod + (rest[0],), rest[1:]
        if not rest:
            return ("mod", mod)
        name = rest[0]
        rx = self.reexports.get(mod, {}).get(name)
        if rx:
            segs, from_mod = rx
            target = self.absolute(segs, from_mod)
            if target is not None:
                r = self.resolve(target + tuple(rest[1:]), depth + 1)
                if r:
                    return r
            return None  # re-export of an external item
        for segs, from_mod in self.globs.get(mod, []):
            target = self.absolute(segs, from_mod)
            r = self.resolve(target + (name,), depth + 1) if target else None
            if r and not (r[0] == "mod" and r[1] == target):
                return r
        return ("item", mod)

    def file_of(self, mod):
        return self.modules[mod][0]

    def edges(self, strict=False):
        edges = {}

        def add(src, mod, reason):
            dst = self.file_of(mod)
            if dst != src:
                edges.setdefault((src, dst), reason)

        aliases = {}  # (file, mod) -> {alias: abs module}
        for path, mod, segs, alias, is_pub, pos in self.uses:
            absolute = self.absolute(segs, mod)
            r = self.resolve(absolute)
            if r is None:
                continue
            kind, target = r
            if is_pub and not strict and target[: len(mod)] == mod:
                continue  # a table of contents re-exporting its own descendants
            if kind == "mod":
                if alias == "*":
                    add(path, target, "use " + "::".join(segs) + "::*")
                else:
                    aliases.setdefault((path, mod), {})[alias] = target
            else:
                add(path, target, "use " + "::".join(segs))
        pat = re.compile(r"(?<![A-Za-z0-9_:])(\$?" + IDENT + r")((?:\s*::\s*" + IDENT + r")+)")
        for path, text in self.files.items():
            for m in pat.finditer(text):
                segs = (m.group(1),) + tuple(s.strip() for s in m.group(2).split("::") if s.strip())
                if any(a <= m.start() < b for a, b in self.use_spans.get(path, ())):
                    continue  # already handled as a use declaration
                mod = self.module_at(path, m.start())
                absolute = None
                local = aliases.get((path, mod), {})
                if segs[0] in local:
                    absolute = local[segs[0]] + segs[1:]
                elif segs[0] in ("crate", "$crate", "self", "super") or segs[0] in self.children.get(mod, ()) \
                        or segs[0] in self.crates:
                    absolute = self.absolute(segs, mod)
                r = self.resolve(absolute)
                if r is None:
                    continue
                kind, target = r
                add(path, target, "::".join(segs))
        return edges


def sccs(nodes, edges):
    graph = {n: [] for n in nodes}
    for (a, b) in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    here = os.path.dirname(os.path.abspath(__file__))
    src = args[0] if args else os.path.join(here, "..", "src")
    src = os.path.normpath(src)
    all_edges, nodes = {}, set()
    lib = Crate(src)
    lib.load(os.path.join(src, "lib.rs"), ("crate",))
    roots = [(lib, None)]
    bins = os.path.join(src, "bin")
    if os.path.isdir(bins):
        for name in sorted(os.listdir(bins)):
            main_rs = os.path.join(bins, name, "main.rs")
            single = os.path.join(bins, name)
            path = main_rs if os.path.exists(main_rs) else single if name.endswith(".rs") else None
            if path:
                roots.append((Crate(src), path))
    for crate, path in roots:
        if path:
            crate.load(os.path.join(src, "lib.rs"), ("atex",))
            crate.load(path, ("crate",))
            crate.crates["atex"] = ("atex",)
        crate.collect_uses()
        for (a, b), why in crate.edges(strict="--strict" in flags).items():
            all_edges.setdefault((a, b), why)
        nodes.update(crate.files)
    rel = lambda p: os.path.relpath(p, os.path.join(src, ".."))
    if "--edges" in flags:
        for (a, b), why in sorted(all_edges.items()):
            print(f"{rel(a)} -> {rel(b)}    ({why})")
    cycles = sccs(nodes, all_edges)
    for comp in cycles:
        print("cycle between files: " + ", ".join(rel(f) for f in comp))
        for (a, b), why in sorted(all_edges.items()):
            if a in comp and b in comp:
                print(f"    {rel(a)} -> {rel(b)}    ({why})")
    # Cycles between sibling modules: within each folder, every file below it counts as the
    # child module (file or folder) it belongs to; `fmf/dump.rs -> jsonfmt.rs` and
    # `jsonfmt.rs -> fmf/value.rs` make `fmf` and `jsonfmt` import each other.
    def sibling(path, folder):
        relp = os.path.relpath(path, folder)
        if relp.startswith(".."):
            return None
        head = relp.split(os.sep)[0]
        if head in ("mod.rs", "lib.rs", "main.rs"):
            return None  # the folder's own table of contents is the parent, not a sibling
        return head[:-3] if head.endswith(".rs") else head

    folders = sorted({os.path.dirname(f) for f in nodes})
    mod_cycles = []
    for folder in folders:
        medges = {}
        for (a, b), why in all_edges.items():
            sa, sb = sibling(a, folder), sibling(b, folder)
            if sa and sb and sa != sb:
                medges.setdefault((sa, sb), f"{rel(a)} -> {rel(b)} ({why})")
        for comp in sccs({m for e in medges for m in e}, medges):
            if all(os.path.isfile(os.path.join(folder, m + ".rs")) for m in comp):
                continue  # already reported as a cycle between files
            mod_cycles.append(comp)
            print(f"cycle between modules in {rel(folder)}/: " + ", ".join(comp))
            for (a, b), why in sorted(medges.items()):
                if a in comp and b in comp:
                    print(f"    {a} -> {b}    via {why}")
    total = len(cycles) + len(mod_cycles)
    if not total:
        print(f"no import cycles ({len(nodes)} files, {len(all_edges)} edges)")
        return 0
    print(f"{total} import cycle(s) ({len(nodes)} files, {len(all_edges)} edges)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
