"""DPO and KTO through the Pythonic layer: preference accuracy rises, the
named metrics arrive, the reference is optional only for reference-free
losses, save/resume, bad input raises."""
from __future__ import annotations

import random

import libalign as la

from . import _util


def _pairs(seed: int, n: int):
    r = random.Random(seed)
    out = []
    for _ in range(n):
        v = r.random() < 0.5
        p = ("v:" if v else "c:") + "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3)) + " "
        a = "".join(r.choice("aeiou") for _ in range(4))
        b = "".join(r.choice("bcdfghklmnprst") for _ in range(4))
        out.append({"prompt": p, "chosen": a if v else b, "rejected": b if v else a})
    return out


def _close(*objs) -> None:
    for o in reversed(objs):
        o.close()


class TestDPO(_util.TestCase):
    def test_accuracy_rises(self) -> None:
        tok = la.Tokenizer.bytes()
        model = _util.tiny_model(11)
        ref = model.clone(frozen=True)
        opt = la.Optimizer(model, learning_rate=3e-4)
        train, held = la.Dataset(_pairs(1, 64)), la.Dataset(_pairs(2, 100))
        self.addCleanup(_close, tok, model, ref, opt, train, held)
        with la.Trainer.dpo(model, ref, tok, train, opt, micro_batch=8, max_steps=40,
                            beta=0.1, loss=la.DPOLoss.SIGMOID) as tr:
            self.assertIsInstance(tr, la.DPOTrainer)
            before = tr.evaluate(held)
            acc0 = tr.metrics(evaluation=True)["rewards/accuracies"]
            stats = list(tr.steps())
            self.assertEqual(len(stats), 40)
            m = stats[-1].metrics
            for k in ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies",
                      "rewards/margins", "logps/chosen", "logps/rejected", "grad_norm"):
                self.assertIn(k, m)
            self.assertEqual(stats[-1].algorithm, la._raw.ALIGN_ALGO_DPO)
            tr.evaluate(held)
            acc1 = tr.metrics(evaluation=True)["rewards/accuracies"]
            m0 = before.metrics["rewards/margins"]
        # at the start policy == reference: the margins are float noise (the
        # reference runs one record at a time, the policy a batch), ~1e-7
        self.assertLess(acc0, 0.6)
        self.assertLess(abs(m0), 1e-4)
        self.assertAlmostEqual(before.loss, 0.6931, places=3)
        self.assertGreaterEqual(acc1, 0.9)

    def test_reference_free_and_errors(self) -> None:
        tok = la.Tokenizer.bytes()
        model = _util.tiny_model(3)
        opt = la.Optimizer(model, learning_rate=1e-3)
        data = la.Dataset(_pairs(4, 8))
        self.addCleanup(_close, tok, model, opt, data)
        with la.Trainer.dpo(model, None, tok, data, opt, loss=la.DPOLoss.ORPO, max_steps=2) as tr:
            s = tr.step()
            self.assertIn("nll", s.metrics)
        with self.assertRaises(la.AlignInvalidArgument) as cm:
            la.Trainer.dpo(model, None, tok, data, opt)
        self.assertIn("needs a reference", str(cm.exception))
        bad = la.Dataset([{"prompt": "q", "chosen": "x", "rejected": "x"}])
        self.addCleanup(bad.close)
        ref = model.clone(frozen=True)
        self.addCleanup(ref.close)
        with self.assertRaises(la.AlignInvalidArgument) as cm:
            la.Trainer.dpo(model, ref, tok, bad, opt)
        self.assertIn("chosen equals rejected", str(cm.exception))
        with self.assertRaises(TypeError):
            la.Trainer.dpo(model, ref, tok, data, opt, gamma=1)

    def test_save_resume(self) -> None:
        tok = la.Tokenizer.bytes()
        data = la.Dataset(_pairs(5, 12))
        self.addCleanup(_close, tok, data)
        d = _util.scratch_dir(self)

        def run(n, save=None, resume=None):
            model = _util.tiny_model(9)
            ref = model.clone(frozen=True)
            opt = la.Optimizer(model, learning_rate=1e-3)
            tr = la.Trainer.dpo(model, ref, tok, data, opt, micro_batch=4, epochs=3)
            if resume:
                tr.resume(resume)
            losses = [s.loss for s in tr.steps(n)]
            if save:
                tr.save(save)
            w = model.forward([[1, 2, 3, 4]]).token_logprobs
            tr.close(); opt.close(); ref.close(); model.close()
            return losses, w

        full, w_full = run(None)
        a, _ = run(4, save=d / "ck")
        b, w_b = run(None, resume=d / "ck")
        self.assertEqual(full, a + b)
        self.assertEqual(w_full, w_b)


class TestKTO(_util.TestCase):
    def test_kto_trains(self) -> None:
        tok = la.Tokenizer.bytes()
        model = _util.tiny_model(11)
        ref = model.clone(frozen=True)
        opt = la.Optimizer(model, learning_rate=3e-4)
        recs = []
        for i, x in enumerate(_pairs(3, 48)):
            good = i % 2 == 0
            recs.append({"prompt": x["prompt"], "response": x["chosen"] if good else x["rejected"],
                         "label": good})
        data = la.Dataset(recs)
        self.addCleanup(_close, tok, model, ref, opt, data)
        with la.Trainer.kto(model, ref, tok, data, opt, micro_batch=8, max_steps=12,
                            desirable_weight=1.0, undesirable_weight=1.0) as tr:
            self.assertIsInstance(tr, la.KTOTrainer)
            stats = list(tr.steps())
        for k in ("loss", "kl", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"):
            self.assertIn(k, stats[-1].metrics)
        self.assertLess(stats[-1].loss, stats[0].loss)
        self.assertGreater(stats[-1].metrics["rewards/chosen"], stats[-1].metrics["rewards/rejected"])
