"""Shared helpers of the binding tests: paths, the tiny model, a header
parser (the header is the contract the binding is checked against), and a
TestCase that fails when a test leaks C handles or callback exceptions."""
from __future__ import annotations

import gc
import os
import re
import shutil
import tempfile
import unittest
from pathlib import Path
from typing import Dict, List

import libalign as la
from libalign import _callbacks

ROOT = Path(__file__).resolve().parents[3]
INCLUDE = ROOT / "include"
HEADER = INCLUDE / "align.h"

TINY = dict(n_layer=2, n_head=2, n_embd=32, vocab_size=257, max_seq_len=64)


def tiny_model(seed: int = 7) -> la.Model:
    """A byte-level model: vocabulary 257, 2 layers, width 32."""
    return la.Model(seed=seed, **TINY)


def scratch_dir(test: unittest.TestCase) -> Path:
    """A fresh folder under $ALIGN_BUILD/tmp (or the system temp), removed
    after the test."""
    base = os.environ.get("ALIGN_BUILD")
    parent = None
    if base:
        parent = os.path.join(base, "tmp")
        os.makedirs(parent, exist_ok=True)
    d = tempfile.mkdtemp(prefix="pytest-", dir=parent)
    test.addCleanup(shutil.rmtree, d, True)
    return Path(d)


def arithmetic_records(n: int = 5) -> List[Dict[str, str]]:
    return [{"prompt": f"{a}+{b}=", "completion": str(a + b)} for a in range(n) for b in range(n)]


class TestCase(unittest.TestCase):
    """Checks, after each test and its cleanups, that every C handle the
    test created was freed and no callback exception is left unraised."""

    def setUp(self) -> None:
        gc.collect()
        self._live_before = la.live_handles()
        # Registered first, so it runs after every other cleanup.
        self.addCleanup(self._check_no_leaks)

    def _check_no_leaks(self) -> None:
        gc.collect()
        self.assertEqual(la.live_handles(), self._live_before, "C handles leaked by the test")
        self.assertEqual(_callbacks.pending_count(), 0, "a callback exception was never re-raised")


# ---- header parsing ----------------------------------------------------------------


def _header_text() -> str:
    return HEADER.read_text()


def _strip_c(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    # drop preprocessor lines (with continuations)
    text = re.sub(r"^\s*#(?:[^\n]*\\\n)*[^\n]*", " ", text, flags=re.M)
    return text


def header_functions() -> Dict[str, str]:
    """name -> normalised prototype of every ALIGN_API function."""
    out = {}
    for m in re.finditer(r"\bALIGN_API\s+([^;]*?);", _strip_c(_header_text()), re.S):
        proto = " ".join(m.group(1).split())
        name = re.search(r"\b(align_\w+)\s*\(", proto).group(1)
        out[name] = proto
    return out


def header_constants() -> Dict[str, int]:
    """Every enum value and object-like #define with an integer value."""
    raw = _header_text()
    out: Dict[str, int] = {}
    for m in re.finditer(r"^\s*#\s*define\s+(ALIGN_\w+)\s+(0x[0-9a-fA-F]+|\d+)[uU]?\b", raw, re.M):
        out[m.group(1)] = int(m.group(2), 0)
    for body in re.findall(r"\benum\s*\{(.*?)\}", _strip_c(raw), re.S):
        for item in body.split(","):
            item = item.strip()
            if not item:
                continue
            m = re.fullmatch(r"(ALIGN_\w+)\s*=\s*(-?\s*(?:0x[0-9a-fA-F]+|\d+))", item)
            assert m, f"unparsed enum item {item!r}"
            out[m.group(1)] = int(m.group(2).replace(" ", ""), 0)
    return out


def header_callback_types() -> List[str]:
    return re.findall(r"typedef\s+\w+\s*\(\s*\*\s*(align_\w+_fn)\s*\)", _strip_c(_header_text()))


def header_structs() -> Dict[str, List[str]]:
    """struct name -> field names in order, for every struct with a body."""
    out: Dict[str, List[str]] = {}
    text = _strip_c(_header_text())
    for m in re.finditer(r"\bstruct\s+(align_\w+)\s*\{(.*?)\}", text, re.S):
        names: List[str] = []
        for decl in m.group(2).split(";"):
            decl = " ".join(decl.split())
            if not decl:
                continue
            for part in decl.split(","):
                nm = re.search(r"(\w+)\s*(\[[^\]]*\])?\s*$", part)
                assert nm, f"unparsed field {part!r} in {m.group(1)}"
                names.append(nm.group(1))
        out[m.group(1)] = names
    return out


def parameter_count(prototype: str) -> int:
    params = prototype[prototype.index("(") + 1: prototype.rindex(")")].strip()
    if params in ("void", ""):
        return 0
    return len(params.split(","))

