#!/usr/bin/python3
"""sft.py — supervised fine-tuning from a JSONL file of demonstrations
({"prompt": ..., "completion": ...} per line), with samples before and after,
held-out loss and exact-match accuracy. The Python twin of examples/sft.c,
with the same options and output.

  sft.py TRAIN.jsonl [--eval TEST.jsonl] [--model W.safetensors --tokenizer T]
      [--layers 4 --heads 4 --embd 128 --ctx 128] [--steps 500] [--batch 16]
      [--accum 1] [--lr 1e-3] [--samples 3] [--save DIR] [--seed 1] [--threads 0]

Without --model a new model is trained from scratch with the 257-symbol byte
tokenizer. Ctrl-C stops training cleanly (at the next step boundary).

  python3 examples/make_shopping_data.py /tmp/shop
  PYTHONPATH=bindings/python python3 bindings/python/examples/sft.py \\
      /tmp/shop/train.jsonl --eval /tmp/shop/test.jsonl
"""
from __future__ import annotations

import argparse
import signal
import sys
from typing import List, Tuple

import libalign as la

Demos = List[Tuple[str, str]]


def parse_args(argv: List[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="sft.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("train", metavar="TRAIN.jsonl")
    ap.add_argument("--eval", metavar="TEST.jsonl", help="held-out demonstrations")
    ap.add_argument("--model", metavar="W.safetensors", help="weights to start from")
    ap.add_argument("--tokenizer", metavar="T", help="tokenizer.json, or a folder with "
                    "encoder.json and vocab.bpe (default: the byte tokenizer)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--embd", type=int, default=128)
    ap.add_argument("--ctx", type=int, default=128, help="context and row length")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=16, help="sequences per micro-batch")
    ap.add_argument("--accum", type=int, default=1, help="micro-batches per step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--samples", type=int, default=3, help="prompts shown before and after")
    ap.add_argument("--save", metavar="DIR", help="save a trainer checkpoint there")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="0: all CPUs")
    return ap.parse_args(argv)


def read_demos(data: la.Dataset) -> Demos:
    """(prompt, completion) of every demonstration record."""
    return [(r["prompt"], r["completion"])
            for i, r in enumerate(data) if data.kind(i) == la.RecordKind.DEMO]


def answer(model: la.Model, tok: la.Tokenizer, demos: Demos, n: int, show: int,
           title: str = "") -> int:
    """Greedy answers to the first n prompts, 32 per batch; prints the first
    `show`; returns how many equal their completion exactly."""
    exact = 0
    if show:
        print(f"\n--- {title} ---")
    for i0 in range(0, n, 32):
        batch = demos[i0:i0 + 32][:n - i0]
        gens = model.generate(tok, [p for p, _ in batch], temperature=0, max_new_tokens=96)
        for i, ((prompt, completion), g) in enumerate(zip(batch, gens)):
            ok = g.text == completion
            exact += ok
            if i0 + i < show:
                print(f"{prompt}{g.text}   [{'exact' if ok else 'wrong'}]")
    return exact


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    la.set_threads(args.threads)
    with (la.Tokenizer(args.tokenizer) if args.tokenizer else la.Tokenizer.bytes()) as tok, \
            (la.Model.load(args.model, seed=args.seed) if args.model else
             la.Model(n_layer=args.layers, n_head=args.heads, n_embd=args.embd,
                      max_seq_len=args.ctx, vocab_size=tok.vocab_size, seed=args.seed)) as model:
        print(f"model: {model.num_params} parameters; BLAS: {la.blas_info()}; "
              f"{la.get_threads()} threads")
        with la.Dataset.from_jsonl(args.train) as train, \
                (la.Dataset.from_jsonl(args.eval) if args.eval else la.Dataset()) as held_out:
            shown = read_demos(held_out if args.eval else train)
            print(f"data: {len(train)} training records"
                  f"{', plus a held-out set' if args.eval else ''}")
            with la.Optimizer(model, learning_rate=args.lr, schedule=la.Schedule.COSINE,
                              warmup_steps=args.steps // 20, total_steps=args.steps,
                              min_lr_ratio=0.1, weight_decay=0.01) as opt, \
                    la.Trainer.sft(model, tok, train, opt, micro_batch=args.batch,
                                   grad_accum=args.accum, max_steps=args.steps, seed=args.seed,
                                   max_seq_len=args.ctx) as trainer:
                answer(model, tok, shown, min(args.samples, len(shown)), args.samples,
                       "samples before training")
                # A Python signal handler runs between C calls, so the stop
                # request lands at the next step boundary.
                signal.signal(signal.SIGINT, lambda sig, frame: trainer.request_stop())
                try:
                    for st in trainer.steps():
                        if st.step % 50 == 0 or st.step == 1 or st.skipped:
                            print(f"step {st.step:5d}  loss {st.loss:.4f}  acc {st.accuracy:.3f}  "
                                  f"lr {st.learning_rate:.2e}  |g| {st.grad_norm:.3f}  "
                                  f"{st.tokens_per_sec:.0f} tok/s"
                                  f"{'  (skipped: non-finite)' if st.skipped else ''}")
                except la.AlignCanceled:
                    print(f"stopped at step {opt.steps_done}")
                finally:
                    signal.signal(signal.SIGINT, signal.default_int_handler)

                if args.eval:
                    ev = trainer.evaluate(held_out)
                    exact = answer(model, tok, shown, len(shown), 0)
                    print(f"\nheld-out: loss {ev.loss:.4f}, next-token accuracy "
                          f"{ev.accuracy:.3f}, exact match {exact}/{len(shown)} "
                          f"({100.0 * exact / (len(shown) or 1):.1f}%)")
                answer(model, tok, shown, min(args.samples, len(shown)), args.samples,
                       "samples after training")
                if args.save:
                    trainer.save(args.save)
                    print(f"checkpoint: {args.save}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except la.AlignError as e:
        print(f"sft: {e}", file=sys.stderr)
        sys.exit(1)
