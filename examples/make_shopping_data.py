#!/usr/bin/env python3
"""Synthetic instruction data for the SFT demo (python3 standard library only).

Each example asks for a shopping list for one or two dishes, in one of a few
phrasings; the answer lists the dishes' ingredients, in order, comma-separated:

  {"prompt": "Create a shopping list for pancakes and tomato soup.\\nList:",
   "completion": " flour, eggs, milk, tomatoes, onion, stock"}

The held-out file uses pairs of dishes never seen together in training, so
exact match on it measures composition, not recall.

  make_shopping_data.py OUTDIR [--train N] [--test N] [--seed S]
"""
import argparse, itertools, json, os, random

DISHES = {
    "pancakes": ["flour", "eggs", "milk"],
    "tomato soup": ["tomatoes", "onion", "stock"],
    "guacamole": ["avocados", "lime", "cilantro"],
    "omelette": ["cheese", "ham", "butter"],
    "pesto pasta": ["basil", "pine nuts", "pasta"],
    "fruit salad": ["apples", "grapes", "kiwis"],
    "chili": ["beans", "beef", "peppers"],
    "curry": ["rice", "chicken", "coconut milk"],
    "tacos": ["tortillas", "salsa", "lettuce"],
    "lemonade": ["lemons", "sugar", "mint"],
    "smoothie": ["bananas", "yogurt", "honey"],
    "fish pie": ["cod", "potatoes", "leeks"],
}

PHRASES = [
    "Create a shopping list for {}.",
    "What do I need to buy for {}?",
    "Shopping list for {}, please.",
    "I want to make {}. What should I buy?",
]


def example(dishes, phrase):
    what = " and ".join(dishes)
    items = [i for d in dishes for i in DISHES[d]]
    return {"prompt": phrase.format(what) + "\nList:", "completion": " " + ", ".join(items)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    names = sorted(DISHES)
    pairs = list(itertools.permutations(names, 2))
    rng.shuffle(pairs)
    held = pairs[: len(pairs) // 5]          # pairs only the test set sees
    seen = pairs[len(pairs) // 5:] + [(n,) for n in names]
    os.makedirs(a.outdir, exist_ok=True)
    with open(os.path.join(a.outdir, "train.jsonl"), "w") as f:
        for _ in range(a.train):
            f.write(json.dumps(example(rng.choice(seen), rng.choice(PHRASES))) + "\n")
    with open(os.path.join(a.outdir, "test.jsonl"), "w") as f:
        for _ in range(a.test):
            f.write(json.dumps(example(rng.choice(held), rng.choice(PHRASES))) + "\n")
    print("wrote %d training and %d held-out examples to %s (%d dish pairs held out)"
          % (a.train, a.test, a.outdir, len(held)))


if __name__ == "__main__":
    main()
