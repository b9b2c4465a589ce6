"""A small generated annotation export, for the README's "Train on your own data" walk-through.

    python docs/own_data_example.py OUT_DIR [--docs N] [--seed S]

writes OUT_DIR/tasks.json (a Label Studio JSON export: tasks with data.text and annotations[].result[]
character spans), OUT_DIR/doccano.jsonl (the same documents as doccano's JSONL: text + label [[start, end,
LABEL]]) and OUT_DIR/train.json, dev.json, test.json (the export cut 80/10/10 by document). The texts are
running prose (several sentences per document, some on their own lines), and some spans end inside a word
("Paris-based"), as annotation tools let them.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

FIRST = ["John", "Mary", "Peter", "Anna", "Ahmed", "Li", "Carlos", "Olga"]
LAST = ["Smith", "Jones", "Brown", "Garcia", "Chen", "Ivanova", "Okafor", "Muller"]
CITIES = ["Paris", "London", "Berlin", "Tokyo", "Nairobi", "Lima", "New York", "Sao Paulo"]
ORGS = ["Reuters", "Siemens", "the United Nations", "Acme Corp", "Toyota", "FIFA", "Google", "BBC"]
MISC = ["German", "French", "Olympic", "English", "Japanese"]
TEMPLATES = [
    "{PER} lives in {LOC}.",
    "{PER} works for {ORG} in {LOC}.",
    "{ORG} said on Monday that {PER} will visit {LOC}.",
    "The {MISC} team beat {ORG} 2-1.",
    "{PER}, a {MISC} citizen, joined the {LOC}-based {ORG} last year.",
    "Shares of {ORG} rose 3 percent in {LOC} trading.",
    "It rained in {LOC} and {LOC} all week.",
]


def make_document(rng: random.Random) -> tuple[str, list[tuple[int, int, str]]]:
    """Text of 1-4 sentences and its (start, end, label) character spans."""
    fill = {"PER": lambda: f"{rng.choice(FIRST)} {rng.choice(LAST)}", "LOC": lambda: rng.choice(CITIES),
            "ORG": lambda: rng.choice(ORGS), "MISC": lambda: rng.choice(MISC)}
    text, spans = "", []
    for k in range(rng.randint(1, 4)):
        if k:
            text += "\n" if rng.random() < 0.3 else " "
        template = rng.choice(TEMPLATES)
        sentence, pos = "", 0
        while pos < len(template):
            a = template.find("{", pos)
            if a < 0:
                sentence += template[pos:]
                break
            b = template.index("}", a)
            sentence += template[pos:a]
            label, value = template[a + 1 : b], fill[template[a + 1 : b]]()
            spans.append((len(text) + len(sentence), len(text) + len(sentence) + len(value), label))
            sentence += value
            pos = b + 1
        text += sentence[0].upper() + sentence[1:]
    return text, spans


def labelstudio_task(i: int, text: str, spans) -> dict:
    result = [{"id": f"r{i}-{j}", "from_name": "label", "to_name": "text", "type": "labels", "origin": "manual",
               "value": {"start": s, "end": e, "text": text[s:e], "labels": [lab]}}
              for j, (s, e, lab) in enumerate(spans)]
    return {"id": i, "data": {"text": text}, "annotations": [{"id": i, "completed_by": 1, "result": result,
                                                              "was_cancelled": False}], "predictions": []}


def write_example(out: Path, docs: int = 60, seed: int = 0) -> dict[str, Path]:
    rng = random.Random(seed)
    documents = [make_document(rng) for _ in range(docs)]
    out.mkdir(parents=True, exist_ok=True)
    tasks = [labelstudio_task(i, t, s) for i, (t, s) in enumerate(documents, start=1)]
    paths = {"export": out / "tasks.json", "doccano": out / "doccano.jsonl"}
    paths["export"].write_text(json.dumps(tasks, indent=2) + "\n")
    paths["doccano"].write_text("".join(json.dumps({"id": i, "text": t, "label": [list(x) for x in s]}) + "\n"
                                        for i, (t, s) in enumerate(documents, start=1)))
    n_train, n_dev = int(0.8 * docs), int(0.1 * docs)
    for name, part in (("train", tasks[:n_train]), ("dev", tasks[n_train : n_train + n_dev]),
                       ("test", tasks[n_train + n_dev :])):
        paths[name] = out / f"{name}.json"
        paths[name].write_text(json.dumps(part, indent=2) + "\n")
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--docs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    for name, path in write_example(a.out, a.docs, a.seed).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
