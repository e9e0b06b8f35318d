"""SFT through the Pythonic layer: the loss falls, iteration stops at
ALIGN_DONE, evaluation, stop requests, save and resume."""
from __future__ import annotations

import libalign as la

from . import _util


def _setup(seed: int = 3, lr: float = 3e-3):
    tok = la.Tokenizer.bytes()
    model = _util.tiny_model(seed)
    data = la.Dataset(_util.arithmetic_records())
    opt = la.Optimizer(model, learning_rate=lr)
    return tok, model, data, opt


def _close(*objs) -> None:
    for o in reversed(objs):
        o.close()


class TestSFT(_util.TestCase):
    def test_loss_falls(self) -> None:
        tok, model, data, opt = _setup()
        self.addCleanup(_close, tok, model, data, opt)
        with la.Trainer.sft(model, tok, data, opt, micro_batch=8, max_steps=60) as tr:
            self.assertIsInstance(tr, la.SFTTrainer)
            stats = list(tr.steps())
        self.assertEqual(len(stats), 60)
        self.assertEqual([s.step for s in stats], list(range(1, 61)))
        first = sum(s.loss for s in stats[:5]) / 5
        last = sum(s.loss for s in stats[-5:]) / 5
        self.assertLess(last, 0.6 * first, f"loss {first:.3f} -> {last:.3f}")
        s = stats[-1]
        self.assertIsInstance(s, la.StepStats)
        self.assertEqual(s.algorithm, 0)
        self.assertGreater(s.tokens, 0)
        self.assertEqual(s.sequences, 8)
        self.assertGreater(s.grad_norm, 0)
        self.assertAlmostEqual(s.learning_rate, 3e-3, places=6)
        self.assertAlmostEqual(s.progress, 1.0, places=5)
        self.assertFalse(s.skipped)
        self.assertEqual(opt.steps_done, 60)

    def test_steps_n_and_done(self) -> None:
        tok, model, data, opt = _setup()
        self.addCleanup(_close, tok, model, data, opt)
        with la.SFTTrainer(model, tok, data, opt, micro_batch=4, max_steps=5) as tr:
            self.assertEqual(len(list(tr.steps(2))), 2)
            self.assertEqual([s.step for s in tr], [3, 4, 5])     # runs to ALIGN_DONE
            self.assertIsNone(tr.step())
            self.assertEqual(list(tr.steps(3)), [])

    def test_epochs_bound_the_run(self) -> None:
        tok, model, data, opt = _setup()
        self.addCleanup(_close, tok, model, data, opt)
        with la.Trainer.sft(model, tok, data, opt, micro_batch=5, epochs=2) as tr:
            stats = list(tr)
        self.assertEqual(len(stats), 10)          # 25 examples / 5 per step x 2 epochs
        self.assertEqual(stats[-1].epoch, 2)

    def test_evaluate(self) -> None:
        tok, model, data, opt = _setup()
        self.addCleanup(_close, tok, model, data, opt)
        with la.Dataset(_util.arithmetic_records(3)) as held_out, \
                la.Trainer.sft(model, tok, data, opt, micro_batch=8, max_steps=3) as tr:
            before = tr.evaluate(held_out)
            self.assertGreater(before.loss, 0)
            self.assertTrue(0.0 <= before.accuracy <= 1.0)
            self.assertEqual(before.sequences, 9)
            list(tr)
            self.assertEqual(opt.steps_done, 3)     # evaluation made no update
            with self.assertRaises(TypeError):
                tr.evaluate([{"prompt": "a", "completion": "b"}])

    def test_evaluation_only_trainer(self) -> None:
        tok, model, data, opt = _setup()
        self.addCleanup(_close, tok, model, data, opt)
        with model.clone(frozen=True) as ref, la.Dataset(_util.arithmetic_records(3)) as held_out, \
                la.Trainer.sft(model, tok, data, opt, micro_batch=8) as tr, \
                la.Trainer.sft(ref, tok, data, None, micro_batch=8) as ev:
            self.assertEqual(ev.evaluate(held_out).loss, tr.evaluate(held_out).loss)
            with self.assertRaises(la.AlignError):
                ev.step()

    def test_request_stop(self) -> None:
        tok, model, data, opt = _setup()
        self.addCleanup(_close, tok, model, data, opt)
        with la.Trainer.sft(model, tok, data, opt, micro_batch=4, max_steps=5) as tr:
            tr.request_stop()
            with self.assertRaises(la.AlignCanceled):
                tr.step()
            self.assertEqual(opt.steps_done, 0)
            self.assertEqual(tr.step().step, 1)   # the request is consumed

    def test_save_and_resume_continue_identically(self) -> None:
        tmp = _util.scratch_dir(self)
        tok, model, data, opt = _setup()
        self.addCleanup(_close, tok, model, data, opt)
        with la.Trainer.sft(model, tok, data, opt, micro_batch=4, max_steps=8) as tr:
            list(tr.steps(3))
            tr.save(tmp / "ckpt")
            expected = [s.loss for s in tr]
        tok2, model2, data2, opt2 = _setup()
        self.addCleanup(_close, tok2, model2, data2, opt2)
        with la.Trainer.sft(model2, tok2, data2, opt2, micro_batch=4, max_steps=8) as tr2:
            tr2.resume(tmp / "ckpt")
            resumed = [s.loss for s in tr2]
        self.assertEqual(len(expected), 5)
        self.assertEqual(resumed, expected)

    def test_chat_records_and_options(self) -> None:
        tok = la.Tokenizer.bytes()
        model = _util.tiny_model()
        opt = la.Optimizer(model, learning_rate=1e-3)
        data = la.Dataset([{"messages": [{"role": "user", "content": "hi"},
                                         {"role": "assistant", "content": "hello"}]}] * 4)
        self.addCleanup(_close, tok, model, data, opt)
        with la.Trainer.sft(model, tok, data, opt, micro_batch=2, max_steps=2,
                            full_sequence_loss=True, pack=True, max_seq_len=48,
                            truncation=la.Truncation.LEFT, user_prefix="U: ",
                            assistant_prefix="A: ", system_prefix=None, seed=9) as tr:
            stats = list(tr)
        self.assertEqual(len(stats), 2)
        self.assertGreater(stats[0].tokens, 0)


class TestExample(_util.TestCase):
    def test_sft_example_runs(self) -> None:
        import json
        import os
        import subprocess
        import sys

        tmp = _util.scratch_dir(self)
        data = tmp / "demos.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in _util.arithmetic_records(3)))
        script = _util.ROOT / "bindings" / "python" / "examples" / "sft.py"
        r = subprocess.run([sys.executable, str(script), str(data), "--eval", str(data),
                            "--layers", "1", "--heads", "2", "--embd", "32", "--ctx", "32",
                            "--steps", "3", "--batch", "4", "--samples", "1",
                            "--save", str(tmp / "ckpt")],
                           capture_output=True, text=True, timeout=120, env=dict(os.environ))
        self.assertEqual(r.returncode, 0, r.stderr)
        for expected in ("samples before training", "step     1", "held-out: loss",
                         "samples after training", "checkpoint: "):
            self.assertIn(expected, r.stdout)
        self.assertTrue((tmp / "ckpt").is_dir())
        r = subprocess.run([sys.executable, str(script), str(tmp / "missing.jsonl")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn("ALIGN_ENOENT", r.stderr)
