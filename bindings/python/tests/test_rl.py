"""Online RL through the Pythonic layer: GRPO, RLOO and PPO with a Python
function as the reward; the mean score rises and the metrics arrive."""
from __future__ import annotations

import libalign as la

from . import _util

PROMPTS = ["Q:", "A:", "X:", "hi", "yo", "go", "ab", "zz"]


def _letters(prompts, responses):
    """Share of the 8 response bytes that are lowercase letters."""
    return [sum("a" <= ch <= "z" for ch in r) / 8.0 for r in responses]


class TestRL(_util.TestCase):
    def _run(self, algo: str, steps: int, scalar_head: bool = False, **params):
        tok = la.Tokenizer.bytes()
        model = la.Model(seed=7, scalar_head=scalar_head, **_util.TINY)
        ref = model.clone(frozen=True)
        opt = la.Optimizer(model, learning_rate=5e-3)
        data = la.Dataset()
        for p in PROMPTS:
            data.add_prompt(p)
        rm = la.RewardModel.from_callable(_letters)
        objs = (tok, model, ref, opt, data, rm)
        self.addCleanup(lambda: [o.close() for o in reversed(objs)])
        make = getattr(la.Trainer, algo)
        with make(model, opt, tok, data, rm, reference=ref, raw_prompt=True, max_new_tokens=8,
                  max_steps=steps, micro_batch=16, **params) as tr:
            self.assertIsInstance(tr, la.RLTrainer)
            stats = list(tr)
        self.assertEqual(len(stats), steps)
        return stats

    def _check_rise(self, stats, w: int, margin: float) -> None:
        sc = [s.metrics["objective/scores"] for s in stats]
        first, last = sum(sc[:w]) / w, sum(sc[-w:]) / w
        self.assertGreater(last, first + margin, f"score {first:.3f} -> {last:.3f}")
        m = stats[-1].metrics
        for k in ("objective/kl", "objective/entropy", "policy/clipfrac_avg", "response_length",
                  "ended_frac", "time/generate_ms", "time/update_ms"):
            self.assertIn(k, m)

    def test_grpo_score_rises(self) -> None:
        stats = self._run("grpo", 30)
        self._check_rise(stats, 5, 0.2)
        self.assertIn("frac_reward_zero_std", stats[-1].metrics)
        self.assertEqual(stats[-1].algorithm, la._raw.ALIGN_ALGO_GRPO)

    def test_rloo_score_rises(self) -> None:
        self._check_rise(self._run("rloo", 30, group_size=4), 5, 0.15)

    def test_ppo_runs(self) -> None:
        stats = self._run("ppo", 8, scalar_head=True, rollouts_per_step=8, ppo_epochs=2)
        self.assertIn("loss/value_avg", stats[-1].metrics)
        self.assertIn("val/vf_explained_var", stats[-1].metrics)

    def test_reward_exception_propagates(self) -> None:
        tok = la.Tokenizer.bytes()
        model = _util.tiny_model()
        opt = la.Optimizer(model, learning_rate=5e-3)
        data = la.Dataset()
        data.add_prompt("hi")

        def bad(prompts, responses):
            raise RuntimeError("scorer broke")

        rm = la.RewardModel.from_callable(bad)
        objs = (tok, model, opt, data, rm)
        self.addCleanup(lambda: [o.close() for o in reversed(objs)])
        with la.Trainer.grpo(model, opt, tok, data, rm, beta=0.0, max_new_tokens=4,
                             max_steps=2) as tr:
            with self.assertRaises(RuntimeError):
                tr.step()


if __name__ == "__main__":
    import unittest
    unittest.main()
