#!/usr/bin/env python3
"""struct-layout.py — the layout of every public struct in include/align.h.

  struct-layout.py dump  > abi/libalign.layout     (what the baseline holds)
  struct-layout.py check abi/libalign.layout       (fails on an incompatible change)

Compiles a small C program that prints sizeof and, for every member, offsetof
and sizeof. Compatible changes are members appended at the end (existing
members keep their offsets and sizes); anything else — a member moved,
resized, removed or inserted in the middle, a struct removed — fails.
abigail-tools 2.2 cannot express "growth at the end only" in a suppression
(its has_data_member_inserted_at rule also hid a swap of two members when we
tried), so this check covers the params/stats structs that abidiff skips."""
import os, re, subprocess, sys, tempfile

ROOT = os.environ.get("ALIGN_ROOT") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def structs(header):
    src = open(header).read()
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    src = re.sub(r"//[^\n]*", "", src)
    out = {}
    for m in re.finditer(r"(?:typedef\s+)?struct\s+(align_\w+)\s*\{(.*?)\}\s*\w*\s*;", src, re.S):
        name, body = m.group(1), m.group(2)
        members = []
        for decl in body.split(";"):
            decl = " ".join(decl.split())
            if not decl:
                continue
            # the type is everything up to the first declarator; declarators are comma separated
            parts = decl.split(",")
            head = parts[0]
            names = [re.findall(r"(\w+)\s*(?:\[[^\]]*\])?\s*$", head)[0]]
            for p in parts[1:]:
                names.append(re.findall(r"(\w+)\s*(?:\[[^\]]*\])?\s*$", p)[0])
            members.extend(names)
        out[name] = members
    return out

def measure():
    s = structs(os.path.join(ROOT, "include", "align.h"))
    lines = ['#include <stdio.h>', '#include <stddef.h>', '#include "align.h"', "int main(void) {"]
    for name, members in s.items():
        lines.append(f'printf("{name} size %zu\\n", sizeof(struct {name}));')
        for mem in members:
            lines.append(f'printf("{name}.{mem} %zu %zu\\n", offsetof(struct {name}, {mem}), '
                         f'sizeof(((struct {name} *)0)->{mem}));')
    lines += ["return 0;", "}"]
    with tempfile.TemporaryDirectory() as d:
        c, exe = os.path.join(d, "layout.c"), os.path.join(d, "layout")
        open(c, "w").write("\n".join(lines) + "\n")
        subprocess.run([os.environ.get("CC", "cc"), "-std=c11", "-I", os.path.join(ROOT, "include"), c, "-o", exe],
                       check=True)
        return subprocess.run([exe], check=True, capture_output=True, text=True).stdout

def parse(text):
    sizes, members = {}, {}
    for line in text.splitlines():
        f = line.split()
        if len(f) == 3 and f[1] == "size":
            sizes[f[0]] = int(f[2])
        elif len(f) == 3:
            members[f[0]] = (int(f[1]), int(f[2]))
    return sizes, members

def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "dump":
        sys.stdout.write(measure())
        return 0
    if len(sys.argv) != 3 or sys.argv[1] != "check":
        print(__doc__)
        return 2
    old_sizes, old_members = parse(open(sys.argv[2]).read())
    new_sizes, new_members = parse(measure())
    errors = []
    for s, size in old_sizes.items():
        if s not in new_sizes:
            errors.append(f"struct {s} removed")
        elif new_sizes[s] < size:
            errors.append(f"struct {s} shrank from {size} to {new_sizes[s]} bytes")
    for m, (off, sz) in old_members.items():
        if m not in new_members:
            errors.append(f"member {m} removed or renamed")
        elif new_members[m] != (off, sz):
            errors.append(f"member {m} moved or resized: offset/size {off}/{sz} -> {new_members[m][0]}/{new_members[m][1]}")
    # the old tail padding: past the end of the struct's last old member
    old_end = {}
    for m, (off, sz) in old_members.items():
        s = m.split(".")[0]
        old_end[s] = max(old_end.get(s, 0), off + sz)
    for m, (off, sz) in new_members.items():
        s = m.split(".")[0]
        # A member named reserved* that only names old tail padding is accepted:
        # the library never reads it (old callers may leave garbage there).
        if (m not in old_members and s in old_sizes and m.split(".")[-1].startswith("reserved")
                and off >= old_end.get(s, 0)):
            continue
        if m not in old_members and s in old_sizes and off < old_sizes[s]:
            errors.append(f"member {m} inserted inside the old struct (offset {off} < old size {old_sizes[s]})")
    for e in errors:
        print("layout: INCOMPATIBLE:", e)
    added = [m for m in new_members if m not in old_members]
    if added and not errors:
        print("layout: appended members (compatible):", ", ".join(added))
    if not errors:
        print(f"layout: {len(old_members)} members of {len(old_sizes)} structs unchanged")
    return 1 if errors else 0

if __name__ == "__main__":
    sys.exit(main())
