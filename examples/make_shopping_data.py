#!/usr/bin/env python3
"""Synthetic instruction data for the SFT demo (python3 standard library only).

Each example asks for a shopping list for one or two dishes, in one of a few
phrasings; the answer lists the dishes' ingredients, in order, comma-separated:

  {"prompt": "Shopping list for pancakes and tomato soup.\\nList:",
   "completion": " flour, eggs, milk, tomatoes, onion, stock"}

The held-out file holds (dishes, phrasing) combinations that never occur in
the training file: the model must answer a request worded in a way it has
not seen for that pair of dishes.

With --careless P, the demonstrator is careless: in a share P of the
training lists one slip is made (an item repeated, an item left out, or an
item of a dish nobody asked for added), as people writing demonstrations
slip. A model trained on them learns the slips too: sampled at
temperature 1, it makes them about as often. The held-out file always
holds the right lists.

prompts.jsonl lists the distinct training requests, prompt only (for the
alignctl version of the pipeline, docs/pipeline.md). With --rl-share F, a further share of those (dishes, phrasing) combinations
is kept out of the training file too and written, prompt only, to
rl_prompts.jsonl: requests for the collection and RL stages that the SFT
model has not seen answered (as InstructGPT's RL prompts were not its
demonstrations' prompts).

  make_shopping_data.py OUTDIR [--train N] [--test N] [--careless P] [--rl-share F] [--seed S]
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
    "Shopping list for {}.",
    "What to buy for {}?",
    "List for {}, please.",
]


def example(dishes, phrase):
    items = [i for d in dishes for i in DISHES[d]]
    return {"prompt": phrase.format(" and ".join(dishes)) + "\nList:", "completion": " " + ", ".join(items)}


def careless(ex, dishes, rng):
    """ex with one slip of a careless demonstrator in its list."""
    items = ex["completion"][1:].split(", ")
    slip = rng.randrange(3)
    if slip == 0:  # an item written twice
        i = rng.randrange(len(items))
        items.insert(rng.randrange(i + 1, len(items) + 1), items[i])
    elif slip == 1:  # an item left out
        del items[rng.randrange(len(items))]
    else:  # an item of a dish not asked for
        other = rng.choice([d for d in sorted(DISHES) if d not in dishes])
        items.insert(rng.randrange(len(items) + 1), rng.choice(DISHES[other]))
    return {"prompt": ex["prompt"], "completion": " " + ", ".join(items)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--careless", type=float, default=0.0)
    ap.add_argument("--rl-share", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    names = sorted(DISHES)
    combos = [(d, p) for d in [(n,) for n in names] + list(itertools.permutations(names, 2)) for p in PHRASES]
    held, seen, rl = [], [], []
    for dishes, p in combos:
        # for two dishes in three of ten cases, one phrasing is kept for the test
        # (and with --rl-share, in a further share of cases for the RL prompts)
        k = (names.index(dishes[0]) + names.index(dishes[-1])) % len(PHRASES)
        u = rng.random() if len(dishes) == 2 and p == PHRASES[k] else 1.0
        if u < 0.3:
            held.append((dishes, p))
        elif u < 0.3 + a.rl_share:
            rl.append((dishes, p))
        else:
            seen.append((dishes, p))
    os.makedirs(a.outdir, exist_ok=True)
    with open(os.path.join(a.outdir, "train.jsonl"), "w") as f:
        slips = 0
        for _ in range(a.train):
            dishes, p = rng.choice(seen)
            ex = example(dishes, p)
            if a.careless > 0 and rng.random() < a.careless:
                ex = careless(ex, dishes, rng)
                slips += 1
            f.write(json.dumps(ex) + "\n")
    with open(os.path.join(a.outdir, "test.jsonl"), "w") as f:
        for _ in range(a.test):
            f.write(json.dumps(example(*rng.choice(held))) + "\n")
    # the distinct training requests, prompt only (alignctl collect and ppo/grpo --prompts)
    with open(os.path.join(a.outdir, "prompts.jsonl"), "w") as f:
        for line in sorted({json.dumps({"prompt": example(*c)["prompt"]}) for c in seen}):
            f.write(line + "\n")
    if rl:
        with open(os.path.join(a.outdir, "rl_prompts.jsonl"), "w") as f:
            for dishes, p in rl:
                f.write(json.dumps({"prompt": example(dishes, p)["prompt"]}) + "\n")
    print("wrote %d training examples (%d with a slip) and %d held-out examples to %s (%d combinations held out%s)"
          % (a.train, slips, a.test, a.outdir, len(held), ", %d RL prompts" % len(rl) if rl else ""))


if __name__ == "__main__":
    main()
