"""The compute precision setting (align_compute_set): bf16 where the build
and CPU allow it, a clear refusal elsewhere; a bf16 forward stays within
bf16 rounding of the fp32 one."""
from __future__ import annotations

import math
import unittest

import libalign as la

from . import _util


class TestCompute(_util.TestCase):
    def tearDown(self) -> None:
        la.set_compute("fp32")
        super().tearDown()

    def test_default_and_bad_mode(self) -> None:
        self.assertEqual(la.get_compute(), "fp32")
        self.assertTrue(la.compute_info().startswith("fp32"))
        with self.assertRaises(ValueError):
            la.set_compute("fp16")

    def test_bf16_forward_or_refusal(self) -> None:
        try:
            la.set_compute("bf16")
        except la.AlignMisuseError as e:
            self.assertIn("unavailable", str(e))
            self.assertEqual(la.get_compute(), "fp32")
            self.assertIn("bf16 unavailable", la.compute_info())
            return
        self.assertEqual(la.get_compute(), "bf16")
        self.assertIn("oneDNN", la.compute_info())
        m = _util.tiny_model()
        try:
            tokens = [[(i * 37 + 11) % 257 for i in range(24)]]
            lp16 = m.forward(tokens).token_logprobs
            la.set_compute("fp32")
            lp32 = m.forward(tokens).token_logprobs
        finally:
            m.close()
        a, b = list(lp16[0]), list(lp32[0])
        self.assertEqual(len(a), len(b))
        self.assertNotEqual(a, b)  # bf16 was used
        for x, y in zip(a, b):
            self.assertTrue(math.isfinite(x))
            self.assertLess(abs(x - y), 0.02 * (1.0 + abs(y)))


if __name__ == "__main__":
    unittest.main()
