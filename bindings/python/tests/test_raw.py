"""The low layer mirrors align.h exactly: every function, constant and
callback type, with the header's prototypes; errors become AlignError."""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import unittest

import libalign as la
from libalign import _callbacks, _loader, _raw

from . import _util


class TestHeaderMirror(unittest.TestCase):
    def test_every_header_function_is_declared(self) -> None:
        funcs = _util.header_functions()
        self.assertGreater(len(funcs), 70)  # the parser found the API
        missing = sorted(set(funcs) - set(_raw.PROTOTYPES))
        self.assertEqual(missing, [], "functions of align.h without a declaration in _raw")
        extra = sorted(set(_raw.PROTOTYPES) - set(funcs))
        self.assertEqual(extra, [], "declarations in _raw that align.h does not have")
        for name in funcs:
            self.assertTrue(hasattr(_raw, name), name)

    def test_prototypes_match_the_header(self) -> None:
        for name, proto in _util.header_functions().items():
            self.assertEqual(_raw.PROTOTYPES[name], proto, name)

    def test_argument_counts_match(self) -> None:
        for name, proto in _util.header_functions().items():
            fn = getattr(_raw, name)
            self.assertEqual(len(fn.argtypes), _util.parameter_count(proto), name)

    def test_library_exports_every_function(self) -> None:
        self.assertEqual(_raw.MISSING, [], "declared functions the loaded library lacks")

    def test_every_constant_is_mirrored(self) -> None:
        consts = _util.header_constants()
        self.assertIn("ALIGN_ENONFINITE", consts)
        self.assertIn("ALIGN_SFT_PACK", consts)
        for name, value in consts.items():
            self.assertTrue(hasattr(_raw, name), f"{name} missing from _raw")
            self.assertEqual(getattr(_raw, name), value, name)
        self.assertEqual(_callbacks._ALIGN_ECALLBACK, consts["ALIGN_ECALLBACK"])

    def test_callback_types(self) -> None:
        names = _util.header_callback_types()
        self.assertEqual(sorted(names), sorted(_raw.CALLBACK_TYPES))

    def test_every_struct_is_mirrored(self) -> None:
        self.assertEqual(sorted(_util.header_structs()), sorted(_raw.STRUCT_TYPES))

    def test_handle_types_are_distinct(self) -> None:
        with la.Dataset() as d:
            with self.assertRaises(ctypes.ArgumentError):
                _raw.align_model_num_params(d._h)


class TestVersionAndErrors(unittest.TestCase):
    def test_version(self) -> None:
        v = _raw.align_version()
        self.assertEqual(v >> 16, _loader.BINDING_MAJOR)
        self.assertEqual(la.version_string(), "%d.%d.%d" % la.version())
        self.assertTrue(_raw.ALIGN_VERSION_AT_LEAST(0, 0, 1))
        self.assertFalse(_raw.ALIGN_VERSION_AT_LEAST(_raw.ALIGN_VERSION_MAJOR + 1, 0, 0))

    def test_error_names(self) -> None:
        self.assertEqual(_raw.err_name(_raw.ALIGN_EINVAL), "ALIGN_EINVAL")
        self.assertEqual(_raw.err_name(12345), "ALIGN_UNKNOWN")
        self.assertTrue(_raw.strerror(_raw.ALIGN_ENOENT))

    def test_error_classes(self) -> None:
        e = _raw.error_for(_raw.ALIGN_ENOENT, "x.json: missing", "align_model_load")
        self.assertIsInstance(e, la.AlignError)
        self.assertIsInstance(e, FileNotFoundError)
        self.assertEqual((e.code, e.name, e.message, e.function),
                         (-12, "ALIGN_ENOENT", "x.json: missing", "align_model_load"))
        self.assertIn("x.json: missing", str(e))
        self.assertIn("ALIGN_ENOENT", str(e))
        self.assertIsInstance(_raw.error_for(_raw.ALIGN_EINVAL), ValueError)
        self.assertIsInstance(_raw.error_for(_raw.ALIGN_EIO), OSError)
        self.assertIsInstance(_raw.error_for(_raw.ALIGN_ECALLBACK), la.AlignCallbackError)
        self.assertIs(type(_raw.error_for(-999)), la.AlignError)

    def test_negative_result_raises_with_last_errmsg(self) -> None:
        # A constructor: the message comes from align_last_errmsg().
        h = _raw.align_model_p()
        with self.assertRaises(la.AlignError) as cm:
            _raw.align_model_load(ctypes.byref(h), b"/nonexistent/model.safetensors", None)
        self.assertLess(cm.exception.code, 0)
        self.assertEqual(cm.exception.function, "align_model_load")
        self.assertIn("/nonexistent/model.safetensors", cm.exception.message)
        self.assertIsNone(h.value)

    def test_negative_result_raises_with_handle_errmsg(self) -> None:
        d = _raw.align_dataset_p()
        _raw.align_dataset_create(ctypes.byref(d))
        try:
            with self.assertRaises(FileNotFoundError) as cm:
                _raw.align_dataset_load_jsonl(d, b"/nonexistent/data.jsonl", 0)
            msg = _raw.align_dataset_errmsg(d).decode()
            self.assertEqual(cm.exception.message, msg)
            self.assertIn("/nonexistent/data.jsonl", msg)
        finally:
            _raw.align_dataset_free(d)

    def test_structs_set_struct_size(self) -> None:
        for cls in _raw.STRUCT_TYPES.values():
            self.assertEqual(cls().struct_size, ctypes.sizeof(cls), cls.__name__)
            self.assertEqual(cls.defaults().struct_size, ctypes.sizeof(cls), cls.__name__)
        p = _raw.align_model_params.defaults()
        self.assertEqual((p.n_layer, p.n_embd, p.vocab_size, p.seed), (4, 128, 50257, 1234))
        g = _raw.align_generate_params.defaults()
        self.assertEqual(g.max_new_tokens, 64)
        self.assertAlmostEqual(g.top_p, 1.0)

    def test_default_params_reject_a_zero_size(self) -> None:
        p = _raw.align_sft_params()
        with self.assertRaises(la.AlignInvalidArgument):
            _raw.align_sft_default_params(ctypes.byref(p), 0)


class TestLoader(unittest.TestCase):
    def test_candidates_order(self) -> None:
        c = _loader.candidates()
        self.assertEqual(c[-1], "libalign.so.0")
        if os.environ.get("LIBALIGN_LIBRARY"):
            self.assertEqual(c[0], os.environ["LIBALIGN_LIBRARY"])

    def _fake(self, cpu_flags: str, maps: str) -> tuple:
        d = _util.scratch_dir(self)
        (d / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {cpu_flags}\n")
        (d / "maps").write_text(maps)
        return str(d / "cpuinfo"), str(d / "maps")

    def test_blas_remedy_decisions(self) -> None:
        cpu, maps = self._fake("fpu sse avx2 avx512f avx512bw", "7f00 r-xp /usr/lib/libc.so.6\n")
        for core, want in (("Prescott", "SkylakeX"), ("Haswell", "SkylakeX"), ("ZEN", "SkylakeX")):
            env: dict = {}
            self.assertEqual(_loader.apply_blas_remedy(env, cpu, maps, lambda: core), "set")
            self.assertEqual(env["OPENBLAS_CORETYPE"], want)
        # a good choice is left alone: Cooperlake on AMD Zen 4, SkylakeX, unknown
        for core in ("Cooperlake", "SkylakeX", "SapphireRapids", None):
            env = {}
            self.assertEqual(_loader.apply_blas_remedy(env, cpu, maps, lambda: core), "not-needed")
            self.assertNotIn("OPENBLAS_CORETYPE", env)
        env = {"OPENBLAS_CORETYPE": "Haswell"}
        self.assertEqual(_loader.apply_blas_remedy(env, cpu, maps, lambda: "Prescott"), "preset")
        self.assertEqual(env["OPENBLAS_CORETYPE"], "Haswell")
        env = {"LIBALIGN_NO_BLAS_FIX": "1"}
        self.assertEqual(_loader.apply_blas_remedy(env, cpu, maps, lambda: "Prescott"), "opt-out")
        self.assertNotIn("OPENBLAS_CORETYPE", env)
        # AVX2 without AVX-512: only pre-AVX2 kernels are slow
        cpu2, _ = self._fake("fpu sse avx2", "")
        env = {}
        self.assertEqual(_loader.apply_blas_remedy(env, cpu2, maps, lambda: "Prescott"), "set")
        self.assertEqual(env["OPENBLAS_CORETYPE"], "Haswell")
        env = {}
        self.assertEqual(_loader.apply_blas_remedy(env, cpu2, maps, lambda: "Haswell"), "not-needed")
        self.assertNotIn("OPENBLAS_CORETYPE", env)
        cpu3, _ = self._fake("fpu sse sse2", "")
        env = {}
        self.assertEqual(_loader.apply_blas_remedy(env, cpu3, maps, lambda: "Prescott"), "no-avx512")
        self.assertNotIn("OPENBLAS_CORETYPE", env)
        _, maps2 = self._fake("", "7f00 r-xp /usr/lib/x86_64-linux-gnu/libopenblas.so.0\n")
        env = {}
        self.assertEqual(_loader.apply_blas_remedy(env, cpu, maps2, lambda: "Prescott"), "too-late")
        self.assertNotIn("OPENBLAS_CORETYPE", env)

    def _python(self, code: str, **env: str) -> subprocess.CompletedProcess:
        e = dict(os.environ)
        e.pop("OPENBLAS_CORETYPE", None)
        e.pop("LIBALIGN_NO_BLAS_FIX", None)
        e.update(env)
        return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True,
                              text=True, timeout=60)

    def test_blas_remedy_in_a_fresh_process(self) -> None:
        """Python runs the kernels a C program would, except where the C
        library would warn of a slow fallback: there it runs the fix."""
        code = ("import os, libalign as la\n"
                "print(la.blas_remedy_state(), os.environ.get('OPENBLAS_CORETYPE'), "
                "la.blas_info(), sep='|')")
        own = _loader.probe_blas_core()  # what OpenBLAS picks by itself (as in C)
        fix = _loader.blas_fix_for(own, _loader._cpu_flags())
        r = self._python(code)
        self.assertEqual(r.returncode, 0, r.stderr)
        state, coretype, info = r.stdout.strip().split("|")
        if fix:
            self.assertEqual((state, coretype), ("set", fix))
            self.assertIn(f"({fix} kernels)", info)
        elif state != "no-avx512":
            self.assertEqual((state, coretype), ("not-needed", "None"))
            if own:
                self.assertIn(f"({own} kernels)", info)
        r = self._python(code, LIBALIGN_NO_BLAS_FIX="1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split("|")[:2], ["opt-out", "None"])

    def test_bad_library_path_is_a_clear_import_error(self) -> None:
        r = self._python("import libalign", LIBALIGN_LIBRARY="/nonexistent/libalign.so.0")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("LibraryNotFound", r.stderr)
        self.assertIn("/nonexistent/libalign.so.0", r.stderr)


if __name__ == "__main__":
    unittest.main()
