"""RewardModel: scoring with a scalar-head model and with a Python function,
normalisation, errors (a model without a scalar head, exceptions and NaN
from the function), save -> load -> score bitwise identical."""
from __future__ import annotations

import math
import traceback

import libalign as la

from . import _util

PROMPTS = ["What is 2+2?", "Name a colour.", "", "Say hi"]
RESPONSES = ["4", "Blue.", "empty prompt", ""]


class Boom(Exception):
    pass


class TestRewardModel(_util.TestCase):
    def setUp(self) -> None:
        super().setUp()
        self.tok = la.Tokenizer.bytes()
        self.addCleanup(self.tok.close)

    def test_model_scores_at_last_token(self) -> None:
        with la.Model(scalar_head=True, seed=3, **_util.TINY) as m, \
                la.RewardModel.from_model(m, self.tok, batch_size=3) as rm:
            s = rm.score(PROMPTS, RESPONSES)
            self.assertEqual(len(s), 4)
            for p, r, v in zip(PROMPTS, RESPONSES, s):
                ids = list((p + r).encode()) + [256]
                out = m.forward([ids], scalar=True)
                self.assertAlmostEqual(out.scalar[0][len(ids) - 1], v, delta=1e-5)
            self.assertEqual(rm.score([], []), [])
            with self.assertRaises(ValueError):
                rm.score(["a"], ["b", "c"])

    def test_no_scalar_head(self) -> None:
        with _util.tiny_model() as m:
            with self.assertRaises(la.AlignInvalidArgument) as cm:
                la.RewardModel.from_model(m, self.tok)
            self.assertIn("no scalar head", str(cm.exception))
        with self.assertRaises(TypeError):
            la.RewardModel()

    def test_callable(self) -> None:
        calls = []

        def fn(prompts, responses):
            calls.append(len(prompts))
            return [len(r) - 0.5 * len(p) for p, r in zip(prompts, responses)]

        with la.RewardModel.from_callable(fn) as rm:
            self.assertEqual(rm.score(PROMPTS, RESPONSES),
                             [len(r) - 0.5 * len(p) for p, r in zip(PROMPTS, RESPONSES)])
            self.assertEqual(calls, [4])
            bias, scale = rm.normalize(PROMPTS, RESPONSES, unit_std=True)
            s = rm.score(PROMPTS, RESPONSES)
            mean = sum(s) / len(s)
            self.assertAlmostEqual(mean, 0.0, delta=1e-5)
            self.assertAlmostEqual(sum((x - mean) ** 2 for x in s) / len(s), 1.0, delta=1e-5)
            self.assertEqual(rm.normalization, (bias, scale))
            rm.set_normalization(1.0, 2.0)
            self.assertEqual(rm.normalization, (1.0, 2.0))
            self.assertEqual(rm.score(["ab"], ["xyz"]), [1.0 + 2.0 * 2.0])

    def test_callable_errors(self) -> None:
        def boom(prompts, responses):
            raise Boom("scorer failed")

        with la.RewardModel.from_callable(boom) as rm:
            caught = None
            try:
                rm.score(["p"], ["r"])
            except Boom as e:  # (assertRaises would strip the traceback)
                caught = e
            self.assertIsNotNone(caught)
            frames = [f.name for f in traceback.extract_tb(caught.__traceback__)]
            self.assertIn("boom", frames)  # the traceback reaches into the scorer
            self.assertIsInstance(caught.__cause__, la.AlignCallbackError)
            self.assertIn("returned -8", str(caught.__cause__))
        with la.RewardModel.from_callable(lambda p, r: [math.nan] * len(p)) as rm:
            with self.assertRaises(la.AlignNonFiniteError) as cm2:
                rm.score(["p"], ["r"])
            self.assertIn("NaN", str(cm2.exception))
        with la.RewardModel.from_callable(lambda p, r: [1.0]) as rm:
            with self.assertRaises(ValueError):
                rm.score(["p", "q"], ["r", "s"])
        with la.RewardModel.from_callable(lambda p, r: [0.0] * len(p)) as rm:
            with self.assertRaises(TypeError):
                rm.score([None], ["r"])

    def test_save_load_score_bitwise(self) -> None:
        d = _util.scratch_dir(self)
        with la.Model(scalar_head=True, seed=5, **_util.TINY) as m, \
                la.RewardModel.from_model(m, self.tok) as rm:
            rm.normalize(PROMPTS, RESPONSES, unit_std=True)
            want = rm.score(PROMPTS, RESPONSES)
            norm = rm.normalization
            m.save(d / "rm.safetensors")
            (d / "hf").mkdir()
            m.save(d / "hf", hf_sequence_classification=True)
        self.assertTrue((d / "hf" / "config.json").exists())
        for path in (d / "rm.safetensors", d / "hf"):
            with la.Model.load(path) as l, la.RewardModel.from_model(l, self.tok) as rm:
                self.assertEqual(rm.score(PROMPTS, RESPONSES), want)
                self.assertEqual(rm.normalization, norm)
