"""ctypes structures match C: a small C program compiled at test time
prints sizeof, _Alignof and every field's offsetof for every struct of
align.h (field names parsed from the header), compared with ctypes."""
from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import subprocess
import unittest

from libalign import _raw

from . import _util


class TestStructLayout(unittest.TestCase):
    def test_layout_matches_c(self) -> None:
        cc = shlex.split(os.environ.get("CC") or "cc")
        if shutil.which(cc[0]) is None:
            self.skipTest(f"no C compiler ({cc[0]})")
        structs = _util.header_structs()
        self.assertIn("align_sft_params", structs)
        lines = ["#include <stddef.h>", "#include <stdio.h>", '#include "align.h"',
                 "int main(void) {"]
        for name, fields in structs.items():
            lines.append(f'    printf("{name} size %zu align %zu\\n", sizeof(struct {name}), '
                         f'(size_t)_Alignof(struct {name}));')
            for f in fields:
                lines.append(f'    printf("{name}.{f} %zu %zu\\n", '
                             f'offsetof(struct {name}, {f}), sizeof(((struct {name} *)0)->{f}));')
        lines += ["    return 0;", "}"]
        d = _util.scratch_dir(self)
        src, exe = d / "layout.c", d / "layout"
        src.write_text("\n".join(lines) + "\n")
        r = subprocess.run(cc + ["-std=c11", "-Wall", "-I", str(_util.INCLUDE), str(src), "-o",
                                 str(exe)], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
        c: dict = {}
        for line in out.splitlines():
            key, *vals = line.split()
            c[key] = vals
        for name, fields in structs.items():
            cls = _raw.STRUCT_TYPES[name]
            with self.subTest(struct=name):
                self.assertEqual([f[0] for f in cls._fields_], fields, "field names/order")
                self.assertEqual(c[name], ["size", str(ctypes.sizeof(cls)),
                                           "align", str(ctypes.alignment(cls))])
                for f in fields:
                    desc = getattr(cls, f)
                    self.assertEqual(c[f"{name}.{f}"], [str(desc.offset), str(desc.size)],
                                     f"{name}.{f}: C offset/size vs ctypes")


if __name__ == "__main__":
    unittest.main()
