#!/usr/bin/env python3
"""The labeler of the shopping-list demo as a program for alignctl.

  shopping_labeler.py --rank    for `alignctl collect --rank-cmd`: reads one
                                {"prompt", "responses": [...]} line per request,
                                answers {"ranking": [...]} (0 = best, ties equal)
  shopping_labeler.py --score   for `alignctl ppo|grpo --reward-cmd` (the control
                                run): reads {"prompt", "response"} lines, answers
                                {"score": x}

The rule is rule_score of examples/pipeline.c: +1 for each wanted item present
(once), -1 for each item not asked for or repeated, +1 more if the list is
exactly the expected one, divided by the number of wanted items.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_shopping_data import DISHES  # noqa: E402  (the one table of ingredients)


def rule_score(prompt, response):
    named = sorted((prompt.find(d), d) for d in DISHES if d in prompt)
    want = [i for _, d in named for i in DISHES[d]]
    if not want:
        return 0.0
    seen, hits, bad, in_order = set(), 0, 0, True
    for item in (t.strip() for t in response.split(",")):
        if not item:
            continue
        if item in want and item not in seen:
            in_order &= want.index(item) == hits
            seen.add(item)
            hits += 1
        else:
            bad += 1
            in_order = False
    exact = in_order and hits == len(want) and bad == 0
    return (hits - bad + exact) / len(want)


def labeler(prompt, responses):
    """Places: 0 = best; equal scores tie (competition ranking)."""
    s = [rule_score(prompt, r) for r in responses]
    return [sum(t > x for t in s) for x in s]


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("--rank", "--score"):
        sys.exit(__doc__)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        if sys.argv[1] == "--rank":
            out = {"ranking": labeler(req["prompt"], req["responses"])}
        else:
            out = {"score": rule_score(req["prompt"], req["response"])}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
