"""RewardTrainer: a reward model learns a preference rule from K = 4
rankings to >= 90 % held-out pairwise accuracy; named metrics in StepStats
and evaluate; a model without a scalar head is refused."""
from __future__ import annotations

import random

import libalign as la

from . import _util


def item(rng: random.Random):
    x = rng.choice("abcd")
    rs = []
    for _ in range(4):
        want = rng.randrange(7)
        r = [x] * want + [rng.choice([c for c in "abcd" if c != x]) for _ in range(6 - want)]
        rng.shuffle(r)
        rs.append("".join(r))
    counts = [r.count(x) for r in rs]
    places = sorted(set(counts), reverse=True)
    return "count %s:" % x, rs, [places.index(c) for c in counts], counts


def rankings(seed: int, n: int) -> la.Dataset:
    rng = random.Random(seed)
    d = la.Dataset()
    while n:
        p, rs, rank, _ = item(rng)
        if max(rank) == 0:
            continue
        d.add_ranking(p, rs, rank)
        n -= 1
    return d


class TestRewardTrainer(_util.TestCase):
    def test_learns_rankings(self) -> None:
        tok = la.Tokenizer.bytes()
        self.addCleanup(tok.close)
        cfg = dict(n_layer=2, n_head=4, n_embd=48, vocab_size=257, max_seq_len=24)
        with la.Model(scalar_head=True, seed=11, **cfg) as m, rankings(1, 2000) as data, \
                rankings(99, 100) as held, \
                la.Optimizer(m, learning_rate=3e-3, schedule=la.Schedule.COSINE, total_steps=300,
                             warmup_steps=10) as opt, \
                la.Trainer.reward(m, tok, data, opt, micro_batch=16, max_steps=300, seed=7) as tr:
            self.assertIsInstance(tr, la.RewardTrainer)
            first = tr.step()
            assert first is not None
            for k in ("loss", "accuracy", "margin", "pairs", "rewards/mean", "rewards/std"):
                self.assertIn(k, first.metrics)
            last = first
            while True:
                s = tr.step()
                if s is None:
                    break
                last = s
            self.assertLess(last.loss, first.loss)
            ev = tr.evaluate(held)
            acc = tr.metrics(evaluation=True)["accuracy"]
            self.assertGreater(tr.metrics(evaluation=True)["pairs"], 300)
            self.assertGreaterEqual(acc, 0.90, f"held-out pairwise accuracy {acc}")
            self.assertAlmostEqual(ev.accuracy, acc, places=5)
            # the scorer agrees with the trainer's evaluation
            with la.RewardModel.from_model(m, tok) as rm:
                rng = random.Random(99)
                right = pairs = 0
                for _ in range(100):
                    p, rs, _, counts = item(rng)
                    sc = rm.score([p] * 4, rs)
                    for a in range(4):
                        for b in range(4):
                            if counts[a] > counts[b]:
                                pairs += 1
                                right += sc[a] > sc[b]
                self.assertGreaterEqual(right / pairs, 0.90)

    def test_needs_scalar_head(self) -> None:
        tok = la.Tokenizer.bytes()
        self.addCleanup(tok.close)
        with _util.tiny_model() as m, rankings(3, 5) as data:
            with self.assertRaises(la.AlignInvalidArgument):
                la.Trainer.reward(m, tok, data, None)
            with self.assertRaises(TypeError):
                la.Trainer.reward(m, tok, data, None, bogus=1)
