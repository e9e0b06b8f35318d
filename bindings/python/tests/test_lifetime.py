"""No handle leaks: finalizers free what is not closed, borrowers keep
what they borrow alive, and (optionally) valgrind finds no leak."""
from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import textwrap
import unittest
import weakref

import libalign as la

from . import _util


class TestLifetime(_util.TestCase):
    def test_finalizer_frees_unclosed_objects(self) -> None:
        before = la.live_handles()
        tok = la.Tokenizer.bytes()
        model = _util.tiny_model()
        self.assertEqual(la.live_handles().get("model", 0), before.get("model", 0) + 1)
        del tok, model
        gc.collect()
        self.assertEqual(la.live_handles(), before)

    def test_trainer_keeps_borrowed_objects_alive(self) -> None:
        tok = la.Tokenizer.bytes()
        model = _util.tiny_model()
        data = la.Dataset(_util.arithmetic_records(2))
        opt = la.Optimizer(model)
        refs = [weakref.ref(o) for o in (tok, model, data, opt)]
        tr = la.Trainer.sft(model, tok, data, opt, max_steps=2, micro_batch=2)
        del tok, model, data, opt
        gc.collect()
        self.assertTrue(all(r() is not None for r in refs))
        self.assertEqual(len(list(tr)), 2)
        del tr
        gc.collect()
        self.assertTrue(all(r() is None for r in refs))
        self.assertEqual(la.live_handles(), {})

    def test_cycles_are_collected_in_any_order(self) -> None:
        for _ in range(3):
            tok = la.Tokenizer.bytes()
            model = _util.tiny_model()
            data = la.Dataset(_util.arithmetic_records(2))
            opt = la.Optimizer(model)
            tr = la.Trainer.sft(model, tok, data, opt, max_steps=1, micro_batch=2,
                                on_step=lambda s: None)
            cycle = [tok, model, data, opt, tr]
            for o in cycle:
                o.cycle = cycle            # every object reachable from every other
            del tok, model, data, opt, tr, cycle, o
            gc.collect()
        self.assertEqual(la.live_handles(), {})

    def test_generation_handles_are_freed(self) -> None:
        with _util.tiny_model() as m, la.Tokenizer.bytes() as tok:
            m.generate(tok, ["a", "b"], max_new_tokens=2)
            self.assertNotIn("generation", la.live_handles())


@unittest.skipUnless(os.environ.get("LIBALIGN_VALGRIND") and shutil.which("valgrind"),
                     "set LIBALIGN_VALGRIND=1 to run the binding under valgrind (slow)")
class TestValgrind(unittest.TestCase):
    def test_no_definite_leaks(self) -> None:
        script = textwrap.dedent("""
            import libalign as la
            tok = la.Tokenizer.bytes()
            m = la.Model(n_layer=2, n_head=2, n_embd=32, vocab_size=257, max_seq_len=32)
            d = la.Dataset([{"prompt": "1+1=", "completion": "2"}] * 4)
            o = la.Optimizer(m)
            with la.Trainer.sft(m, tok, d, o, max_steps=2, micro_batch=2) as tr:
                list(tr)
            m.generate(tok, ["a"], max_new_tokens=4)
            for x in (o, d, m, tok):
                x.close()
            assert la.live_handles() == {}, la.live_handles()
        """)
        # valgrind does not decode AVX-512: use OpenBLAS's AVX2 kernels
        env = dict(os.environ, PYTHONMALLOC="malloc", OPENBLAS_CORETYPE="Haswell")
        r = subprocess.run(["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite",
                            "--show-leak-kinds=definite", "--error-exitcode=99",
                            sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr[-4000:])
