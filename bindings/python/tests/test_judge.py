"""Judge models and the collection of rankings through the Pythonic layer:
a judge trained on a rule agrees with it, order symmetry, ranks, scores, the
judge as a reward model, collect() with a Python ranker and with a judge,
and failing rankers."""
from __future__ import annotations

import libalign as la

from . import _util

TEMPLATE = "Q:{prompt} A:{a} B:{b} ?"


def _stars(n: int) -> str:
    return "*" * n


def _train_judge(tok: la.Tokenizer) -> la.Model:
    """A tiny judge trained to prefer the response with more items."""
    records = []
    for letter in "abcdefgh":
        for g in range(1, 6):
            for w in range(1, 6):
                if g <= w:
                    continue
                for good_first in (0, 1):
                    a, b = (_stars(g), _stars(w)) if good_first else (_stars(w), _stars(g))
                    records.append({"prompt": TEMPLATE.replace("{prompt}", letter)
                                    .replace("{a}", a).replace("{b}", b),
                                    "completion": "A" if good_first else "B"})
    m = la.Model(seed=7, n_layer=2, n_head=2, n_embd=64, vocab_size=257, max_seq_len=32)
    with la.Dataset(records) as data, la.Optimizer(m, learning_rate=1e-3) as opt, \
            la.Trainer.sft(m, tok, data, opt, micro_batch=32, max_steps=250, max_seq_len=32) as tr:
        for _ in tr.steps():
            pass
    return m


class TestJudge(_util.TestCase):
    def test_trained_judge_agrees_and_is_symmetric(self) -> None:
        with la.Tokenizer.bytes() as tok:
            m = _train_judge(tok)
            self.addCleanup(m.close)
            with la.Judge(m, tok, template=TEMPLATE, name="stars") as j:
                self.assertEqual(j.name, "stars")
                agree = n = 0
                for letter in "xyz":  # prompts never seen in training
                    for g in range(2, 6):
                        for w in range(1, g):
                            p = j.prefer(letter, _stars(g), _stars(w))
                            q = j.prefer(letter, _stars(w), _stars(g))
                            self.assertAlmostEqual(p + q, 1.0, delta=1e-6)
                            agree += p > 0.5
                            n += 1
                self.assertGreaterEqual(agree / n, 0.9, f"agreement {agree}/{n}")
                places, wins = j.rank("x", ["**", "****", "*", "***"])
                self.assertEqual(places, [2, 0, 3, 1])
                self.assertAlmostEqual(sum(wins) / 4, 0.5, delta=1e-5)

    def test_untrained_judge_api(self) -> None:
        with la.Tokenizer.bytes() as tok, _util.tiny_model() as m:
            d = _util.scratch_dir(self)
            (d / "c.txt").write_text("Be brief.\nBe kind.\n")
            with la.Judge(m, tok, template="{principle}|{prompt}|{a}|{b}|",
                          principles_file=d / "c.txt", principles=["Be exact."], seed=3,
                          score_template="{principle}|{prompt}={response}") as j:
                self.assertEqual(j.name, "judge")
                self.assertEqual(j.prefer("q", "x", "x"), 0.5)
                p = j.prefer("q", "a", "b")
                self.assertTrue(0.0 < p < 1.0)
                self.assertAlmostEqual(p + j.prefer("q", "b", "a"), 1.0, delta=1e-6)
                s = j.score(["q", "q"], ["a", "bb"])
                self.assertTrue(all(1.0 <= v <= 10.0 for v in s), s)
                with j.reward_model() as rm:
                    self.assertEqual(rm.score(["q", "q"], ["a", "bb"]), s)
            with self.assertRaises(la.AlignInvalidArgument) as cm:
                la.Judge(m, tok, template="{prompt} {a}")
            self.assertIn("{a} and {b}", str(cm.exception))
            with self.assertRaises(la.AlignInvalidArgument):
                la.Judge(m, tok, answers=("Yes", "Yes!"))
            with la.Judge(m, tok, template="{prompt}|{a}|{b}", answers=("Yes", "Yes!"),
                          answer_eot=True, chat=True) as j:
                self.assertTrue(0.0 < j.prefer("q", "a", "b") < 1.0)


class TestCollect(_util.TestCase):
    def _prompts(self) -> la.Dataset:
        return la.Dataset([{"prompt": "1+1"}, {"prompt": "2+2", "completion": "4"},
                           {"prompt": "hi"}])

    def test_python_ranker(self) -> None:
        seen = []

        def by_length(prompt, responses):
            seen.append((prompt, list(responses)))
            lens = sorted(set(len(r) for r in responses))
            return [lens.index(len(r)) for r in responses]

        with la.Tokenizer.bytes() as tok, _util.tiny_model() as m, self._prompts() as prompts, \
                la.Dataset() as out:
            calls = []
            n = la.collect(m, tok, prompts, out, by_length, k=3, source=la.Source.HUMAN,
                           annotator="alice", max_new_tokens=5, seed=9, timestamp=1700000000,
                           progress=lambda done, total: calls.append((done, total)))
            self.assertEqual(n, 3)
            self.assertEqual(calls, [(1, 3), (2, 3), (3, 3)])
            self.assertEqual([p for p, _ in seen], ["1+1", "2+2", "hi"])
            rec = out[0]
            self.assertEqual(rec["prompt"], "1+1")
            self.assertEqual(len(rec["responses"]), 3)
            self.assertEqual(rec["source"], "human")
            self.assertEqual(rec["annotator"], "alice")
            self.assertEqual(rec["timestamp"], 1700000000)
            # the same again with the same seed; and they load back from JSONL
            with la.Dataset() as again:
                la.collect(m, tok, prompts, again, by_length, k=3, source=la.Source.HUMAN,
                           annotator="alice", max_new_tokens=5, seed=9, timestamp=1700000000)
                self.assertEqual(list(again), list(out))
            path = _util.scratch_dir(self) / "r.jsonl"
            out.save_jsonl(path)
            with la.Dataset.from_jsonl(path) as back:
                self.assertEqual(list(back), list(out))
            # a chat policy
            with la.Dataset() as chat:
                self.assertEqual(la.collect(m, tok, prompts, chat, by_length, k=2, chat=True,
                                            max_new_tokens=3), 3)

    def test_failing_rankers(self) -> None:
        class Boom(Exception):
            pass

        def boom(prompt, responses):
            if prompt == "2+2":
                raise Boom("no")
            return [0] * len(responses)

        with la.Tokenizer.bytes() as tok, _util.tiny_model() as m, self._prompts() as prompts, \
                la.Dataset() as out:
            with self.assertRaises(Boom):
                la.collect(m, tok, prompts, out, boom, k=2, max_new_tokens=3)
            self.assertEqual(len(out), 1)  # the first prompt's record stays
            with self.assertRaises(la.AlignInvalidArgument) as cm:
                la.collect(m, tok, prompts, out, lambda p, r: [0, 5], k=2, max_new_tokens=3)
            self.assertIn("outside 0..1", str(cm.exception))
            with self.assertRaises(ValueError):
                la.collect(m, tok, prompts, out, lambda p, r: [0], k=2, max_new_tokens=3)
            self.assertEqual(len(out), 1)

    def test_judge_ranker(self) -> None:
        with la.Tokenizer.bytes() as tok, _util.tiny_model() as m, self._prompts() as prompts, \
                la.Dataset() as out, la.Judge(m, tok, template="{prompt}|{a}|{b}", name="self-judge") as j:
            self.assertEqual(la.collect(m, tok, prompts, out, j, k=3, max_new_tokens=3), 3)
            for rec in out:
                self.assertEqual(rec["source"], "ai")
                self.assertEqual(rec["annotator"], "self-judge")
                self.assertEqual(sorted(set(rec["ranking"]))[0], 0)
