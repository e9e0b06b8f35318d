"""Named metrics on every step result, and SFT fed by a host source of
records of any kind (bitwise the same run as over the same records loaded
at once)."""
from __future__ import annotations

import struct

import libalign as la

from . import _util


def _bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def _records(n: int):
    out = []
    for k in range(n):
        p, c = f"{k} plus {k} is", f" {2 * k}"
        if k % 3 == 0:
            out.append({"messages": [{"role": "user", "content": p},
                                     {"role": "assistant", "content": c}],
                        "source": "human", "annotator": "ann"})
        else:
            out.append({"prompt": p, "completion": c, "source": "ai"})
        out.append({"prompt": p, "chosen": c, "rejected": " 0"})       # not SFT data
        out.append({"prompt": p, "response": c, "score": 1.5})        # not SFT data
    return out


def _run(data: la.Dataset, **params):
    tok = la.Tokenizer.bytes()
    model = _util.tiny_model(5)
    opt = la.Optimizer(model, learning_rate=3e-3)
    try:
        with la.Trainer.sft(model, tok, data, opt, micro_batch=3, epochs=2, sequential=True,
                            truncation=la.Truncation.LEFT, **params) as tr:
            return [s.loss for s in tr], tr
    finally:
        opt.close()
        model.close()
        tok.close()


class TestMetrics(_util.TestCase):
    def test_step_and_eval_metrics(self) -> None:
        tok = la.Tokenizer.bytes()
        model = _util.tiny_model(3)
        data = la.Dataset(_util.arithmetic_records())
        opt = la.Optimizer(model, learning_rate=3e-3)
        seen = []
        self.addCleanup(lambda: [o.close() for o in (opt, data, model, tok)])
        with la.Trainer.sft(model, tok, data, opt, micro_batch=4, max_steps=3,
                            on_step=lambda s: seen.append(s.metrics)) as tr:
            self.assertEqual(tr.metrics(), {})
            stats = list(tr)
            s = stats[-1]
            for name in ("loss", "accuracy", "learning_rate", "grad_norm", "tokens", "sequences",
                         "tokens_per_sec", "epoch"):
                self.assertIn(name, s.metrics)
            self.assertEqual(s.metrics["loss"], s.loss)
            self.assertEqual(s.metrics["grad_norm"], s.grad_norm)
            self.assertEqual(s.metrics["tokens"], s.tokens)
            self.assertEqual(tr.metrics(), s.metrics)
            self.assertEqual(len(seen), 3)
            self.assertEqual(seen[-1]["loss"], s.loss)     # on_step sees the step's metrics
            ev = tr.evaluate(data)
            self.assertEqual(ev.metrics["loss"], ev.loss)
            self.assertEqual(tr.metrics(evaluation=True)["accuracy"], ev.accuracy)
            self.assertEqual(tr.metrics()["loss"], s.loss)  # the step's set is separate


class TestSource(_util.TestCase):
    def test_source_of_any_kind_equals_loaded_data(self) -> None:
        records = _records(10)
        with la.Dataset(records) as whole:
            a, _ = _run(whole)
        it = iter(records)

        def source():
            return [r for r in (next(it, None), next(it, None)) if r is not None]

        with la.Dataset() as fed:
            fed.set_source(source)
            b, _ = _run(fed)
            self.assertEqual(len(fed), len(records))
            self.assertEqual(fed[0]["source"], "human")
            self.assertEqual(fed[0]["annotator"], "ann")
        self.assertGreater(len(a), 6)
        self.assertEqual([_bits(x) for x in a], [_bits(x) for x in b])

    def test_source_exception_propagates(self) -> None:
        calls = []

        def source():
            calls.append(1)
            if len(calls) > 1:
                raise KeyError("store offline")
            return {"prompt": "1 plus 1 is", "completion": " 2"}

        tok = la.Tokenizer.bytes()
        model = _util.tiny_model(5)
        opt = la.Optimizer(model, learning_rate=3e-3)
        self.addCleanup(lambda: [o.close() for o in (opt, model, tok)])
        with la.Dataset() as fed:
            fed.set_source(source)
            with la.Trainer.sft(model, tok, fed, opt, micro_batch=2, max_steps=3) as tr:
                with self.assertRaises(KeyError):
                    tr.step()
                self.assertEqual(opt.steps_done, 0)


if __name__ == "__main__":
    import unittest
    unittest.main()
