#!/usr/bin/env python3
"""pipeline.py — examples/pipeline.c's RLHF pipeline through the Python binding.

The same stages on the same task (examples/make_shopping_data.py DIR writes
DIR/train.jsonl and DIR/test.jsonl): SFT from scratch with the byte
tokenizer, K = 4 samples per request ranked by the labeler's rule, a reward
model (the SFT model with a scalar head) trained on the rankings, GRPO (or
PPO) against it with a KL penalty to the SFT policy, and an evaluation of
SFT vs RL policy on the held-out requests by the rule, not the reward model.

  python3 examples/pipeline.py DIR [--algo grpo|ppo] [--reward rm|rule]
          [--sft-steps N] [--rl-steps N] [--rl-lr F] [--seed S]

Run from the repository with the library built (make lib), e.g.
  PYTHONPATH=bindings/python LIBALIGN_LIBRARY=build/libalign.so \\
      python3 examples/pipeline.py build/demo --sft-steps 500
"""
import argparse
import json
import os
import sys

import libalign as la

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shopping_labeler import labeler, rule_score  # noqa: E402  (the labeler's rule)


def evaluate(model, tok, held, temperature, rounds, seed):
    """Mean exact match and rule score of the answers to the held-out requests."""
    prompts = [p for p, _ in held]
    exact = rule = 0.0
    for r in range(rounds):
        gens = model.generate(tok, prompts, temperature=temperature, max_new_tokens=64, seed=seed + 7919 * r)
        for (p, want), g in zip(held, gens):
            exact += g.text == want
            rule += rule_score(p, g.text)
    n = len(held) * rounds
    return exact / n, rule / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--algo", choices=["grpo", "ppo"], default="grpo")
    ap.add_argument("--reward", choices=["rm", "rule"], default="rm")
    ap.add_argument("--sft-steps", type=int, default=500)
    ap.add_argument("--rl-steps", type=int, default=200)
    ap.add_argument("--rl-lr", type=float, default=2e-5)
    ap.add_argument("--eval-rounds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    def rows(name):
        with open(os.path.join(a.dir, name)) as f:
            return [json.loads(line) for line in f]
    train_rows, test_rows = rows("train.jsonl"), rows("test.jsonl")
    distinct = list(dict.fromkeys(r["prompt"] for r in train_rows))  # each request once (lists may differ: slips)
    held = list(dict.fromkeys((r["prompt"], r["completion"]) for r in test_rows))
    sft_path = os.path.join(a.dir, "sft_py.safetensors")

    with la.Tokenizer.bytes() as tok, \
            la.Model(n_layer=2, n_head=4, n_embd=128, vocab_size=tok.vocab_size, max_seq_len=128,
                     seed=a.seed) as sft, \
            la.Dataset() as train, la.Dataset() as prompts, la.Dataset() as rankings, \
            la.Dataset() as rankings_eval:
        train.load_jsonl(os.path.join(a.dir, "train.jsonl"))
        # (a) SFT
        with la.Optimizer(sft, learning_rate=3e-3, schedule=la.Schedule.COSINE, total_steps=a.sft_steps,
                          warmup_steps=a.sft_steps // 20, min_lr_ratio=0.1, weight_decay=0.01) as opt, \
                la.Trainer.sft(sft, tok, train, opt, micro_batch=16, max_steps=a.sft_steps, seed=a.seed) as tr:
            for st in tr.steps():
                if st.step % 50 == 0 or st.step == a.sft_steps:
                    print(f"[sft] step {st.step}/{a.sft_steps} loss {st.loss:.4f}", flush=True)
        sft.save(sft_path)
        before_greedy = evaluate(sft, tok, held, 0.0, 1, 0)
        before_sampled = evaluate(sft, tok, held, 1.0, a.eval_rounds, 1000 + a.seed)

        # (b) collection: K = 4 samples at T = 1 per request, ranked by the labeler
        for p in distinct:
            prompts.add_prompt(p)
        n_eval = min(48, len(distinct) // 4)
        n_train = len(distinct) - n_eval
        la.collect(sft, tok, prompts, rankings, labeler, k=4, temperature=1.0, max_new_tokens=64,
                   count=n_train, seed=2000 + a.seed, source=la.Source.HUMAN, annotator="labeler-rule")
        la.collect(sft, tok, prompts, rankings_eval, labeler, k=4, temperature=1.0, max_new_tokens=64,
                   first=n_train, count=n_eval, seed=1999 + a.seed)
        print(f"[collect] {len(rankings)} + {len(rankings_eval)} held-out rankings", flush=True)

        # (c) reward model: the SFT model with a fresh scalar head
        with la.Model.load(sft_path, scalar_head=True, seed=a.seed) as rm_model:
            with la.Optimizer(rm_model, learning_rate=3e-4) as o, \
                    la.Trainer.reward(rm_model, tok, rankings, o, micro_batch=8, epochs=4, seed=a.seed) as tr:
                for st in tr.steps():
                    pass
                acc = tr.evaluate(rankings_eval).accuracy
            print(f"[rm] held-out pairwise accuracy {acc:.3f}", flush=True)
            with la.RewardModel.from_model(rm_model, tok) as rm_scorer, \
                    la.RewardModel.from_callable(lambda ps, rs: [rule_score(p, r) for p, r in zip(ps, rs)]) \
                    as rule_scorer, \
                    sft.clone(frozen=True) as ref:
                reward = rule_scorer if a.reward == "rule" else rm_scorer
                # (d) RL: the SFT model becomes the policy; KL to its frozen copy
                common = dict(reference=ref, raw_prompt=True, max_steps=a.rl_steps, seed=a.seed,
                              max_new_tokens=64, max_prompt_len=64, temperature=1.0)
                with la.Optimizer(sft, learning_rate=a.rl_lr) as o:
                    if a.algo == "grpo":
                        tr = la.Trainer.grpo(sft, o, tok, prompts, reward, group_size=4, prompts_per_step=8,
                                             micro_batch=16, beta=0.04, **common)
                        vm = vo = None
                    else:
                        vm = rm_model.clone()
                        vo = la.Optimizer(vm, learning_rate=1e-4)
                        tr = la.Trainer.ppo(sft, o, tok, prompts, reward, value=vm, value_optimizer=vo,
                                            rollouts_per_step=32, ppo_epochs=2, minibatches=2, micro_batch=16,
                                            kl_coef=0.05, **common)
                    with tr:
                        for st in tr.steps():
                            m = st.metrics
                            if st.step % 20 == 0 or st.step == 1:
                                print(f"[{a.algo}] step {st.step}/{a.rl_steps} score {m['objective/scores']:.3f} "
                                      f"kl {m['objective/kl']:.4f}", flush=True)
                    if vo is not None:
                        vo.close()
                        vm.close()

        # (e) evaluation by the rule, not the reward model
        after_greedy = evaluate(sft, tok, held, 0.0, 1, 0)
        after_sampled = evaluate(sft, tok, held, 1.0, a.eval_rounds, 1000 + a.seed)
        print(f"{'metric':<28} {'SFT':>7} {a.algo:>7}")
        for name, b, c in (("exact match, sampled T=1", before_sampled[0], after_sampled[0]),
                           ("labeler score, sampled T=1", before_sampled[1], after_sampled[1]),
                           ("exact match, greedy", before_greedy[0], after_greedy[0]),
                           ("labeler score, greedy", before_greedy[1], after_greedy[1])):
            print(f"{name:<28} {b:7.3f} {c:7.3f}")


if __name__ == "__main__":
    main()
