#!/usr/bin/python3
"""Supervised fine-tuning from Python: the Python twin of examples/sft.c.

Fine-tunes a model on a JSONL file of demonstrations
({"prompt": ..., "completion": ...} or {"messages": [...]} per line) and
prints greedy samples for a few of its prompts before and after training.

    PYTHONPATH=bindings/python python3 bindings/python/examples/sft.py train.jsonl

Without --model a small model is created from scratch (byte tokenizer,
vocabulary 257), which learns a small task in seconds; with --model and
--tokenizer it fine-tunes a GPT-2 checkpoint (safetensors) instead.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import List, Tuple

import libalign as la


def parse_args(argv: List[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="JSONL file of demonstrations")
    ap.add_argument("--model", help="safetensors weights to start from (default: a new model)")
    ap.add_argument("--tokenizer", help="tokenizer.json or a folder with encoder.json + vocab.bpe "
                    "(default: the byte tokenizer)")
    ap.add_argument("--out", help="where to save the fine-tuned weights")
    ap.add_argument("--steps", type=int, default=300, help="optimiser steps (default 300)")
    ap.add_argument("--batch", type=int, default=8, help="sequences per step (default 8)")
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    ap.add_argument("--max-len", type=int, default=128, help="tokens per row (default 128)")
    ap.add_argument("--samples", type=int, default=4, help="prompts to sample (default 4)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1234)
    return ap.parse_args(argv)


def sample_prompts(data: la.Dataset, k: int) -> List[Tuple[str, str]]:
    """(prompt, expected completion) of the first k demonstrations."""
    out = []
    for i in range(len(data)):
        if len(out) == k:
            break
        if data.kind(i) == la.RecordKind.DEMO:
            rec = data[i]
            out.append((rec["prompt"], rec["completion"]))
    return out


def show(title: str, model: la.Model, tok: la.Tokenizer, pairs: List[Tuple[str, str]],
         max_new_tokens: int) -> None:
    print(f"--- {title}")
    if not pairs:
        print("(no demonstrations to sample)")
        return
    gens = model.generate(tok, [p for p, _ in pairs], temperature=0,
                          max_new_tokens=max_new_tokens)
    for (prompt, expected), g in zip(pairs, gens):
        print(f"prompt:   {prompt!r}\nexpected: {expected!r}\nsample:   {g.text!r} "
              f"({g.finish_reason.name.lower()}, {len(g.tokens)} tokens)")


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    print(f"libalign {la.version_string()}; {la.blas_info()}")
    try:
        with (la.Tokenizer(args.tokenizer) if args.tokenizer else la.Tokenizer.bytes()) as tok, \
                la.Dataset.from_jsonl(args.data) as data, \
                (la.Model.load(args.model, seed=args.seed) if args.model else
                 la.Model(n_layer=4, n_head=4, n_embd=128, vocab_size=tok.vocab_size,
                          max_seq_len=args.max_len, seed=args.seed)) as model, \
                la.Optimizer(model, learning_rate=args.lr, schedule=la.Schedule.COSINE,
                             warmup_steps=min(20, args.steps // 10),
                             total_steps=args.steps, min_lr_ratio=0.1) as opt, \
                la.Trainer.sft(model, tok, data, opt, micro_batch=args.batch,
                               max_steps=args.steps, seed=args.seed,
                               max_seq_len=min(args.max_len, model.config.max_seq_len)) as trainer:
            cfg = model.config
            print(f"{len(data)} records from {args.data}; model: {cfg.n_layer} layers, width "
                  f"{cfg.n_embd}, {model.num_params:,} parameters")
            pairs = sample_prompts(data, args.samples)
            show("before training", model, tok, pairs, args.max_new_tokens)
            t0 = time.monotonic()
            every = max(1, args.steps // 10)
            for s in trainer.steps():
                if s.step % every == 0 or s.step == 1:
                    print(f"step {s.step:5d}  loss {s.loss:.4f}  acc {s.accuracy:.3f}  "
                          f"lr {s.learning_rate:.2e}  {s.tokens_per_sec:,.0f} tok/s")
            print(f"trained {opt.steps_done} steps in {time.monotonic() - t0:.1f} s")
            show("after training", model, tok, pairs, args.max_new_tokens)
            if args.out:
                model.save(args.out)
                print(f"saved {args.out}")
    except la.AlignError as e:
        print(f"sft.py: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
