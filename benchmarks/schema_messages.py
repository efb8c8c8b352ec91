"""How many one-mistake specs (tests/typo_specs) get a schema message naming the mistake.

Each typo spec's first line says what was changed (`old` -> `new`); the mistake is the words of
`new` that `old` lacks (`activaton`, `Conv2d`, `1.5`, `"32"`). The specs are checked against
`netspec schema` as check-jsonschema reports them without `--verbose`: each error's own line,
its "Best Match" (jsonschema's best_match of the error's context) and its "Best Deep Match".
A line names the mistake when it holds one of those words and is not a dump of a whole mapping
or list (`{'conv2d': {...}} is not valid under any of the given schemas`).

    python benchmarks/schema_messages.py            # the table, then the counts
    python benchmarks/schema_messages.py --schema old.json

Counts: `first` (the error's own line names it), `best` (its own line or Best Match: what is
read first) and `shown` (any of the three lines).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from check_jsonschema.reporter import find_best_deep_match

from netspec.schema import json_schema

TYPOS = Path(__file__).resolve().parent.parent / "tests" / "typo_specs"
WORD = re.compile(r'"[^"]*"|[\w$.+-]+')


def mistake(path: Path) -> set[str]:
    """The words the typo brought in, from the spec's first line: `old` -> `new`."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    quoted = re.findall(r"`([^`]*)`", first)
    # `a` -> `b` at the end; where that shows no change, the description's own pair
    # (`layer:` for a group's `layers:`): the wrong word first.
    for new, old in ((quoted[-1], quoted[-2]), (quoted[0], quoted[1])):
        words = set(WORD.findall(new)) - set(WORD.findall(old))
        if words:
            return {w.strip('"') for w in words}
    return set()


def lines(validator: Any, data: Any) -> list[tuple[str, str, str]]:
    """(own line, Best Match, Best Deep Match) of every error check-jsonschema prints."""
    out = []
    for err in validator.iter_errors(data):
        own = f"{err.json_path}: {err.message}"
        if err.context:
            best = jsonschema.exceptions.best_match(err.context)
            deep = find_best_deep_match(err)
            out.append(
                (own, f"{best.json_path}: {best.message}", f"{deep.json_path}: {deep.message}")
            )
        else:
            out.append((own, own, own))
    return out


def names(line: str, words: set[str]) -> bool:
    message = line.split(": ", 1)[1]
    if message.startswith(("{", "[")):  # a whole item dumped: says where, not what
        return False
    return any(re.search(rf"(?<![\w$]){re.escape(w)}(?![\w])", line) for w in words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", type=Path, help="a schema file (default: netspec's own)")
    args = parser.parse_args()
    schema = json.loads(args.schema.read_text()) if args.schema else json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    counts = {"first": 0, "best": 0, "shown": 0}
    specs = sorted(TYPOS.glob("*.yaml"))
    print("| spec | mistake | first line | best match |\n|---|---|---|---|")
    for path in specs:
        words = mistake(path)
        found = lines(validator, yaml.safe_load(path.read_text(encoding="utf-8")))
        first = any(names(own, words) for own, _, _ in found)
        best = first or any(names(b, words) for _, b, _ in found)
        shown = best or any(names(d, words) for _, _, d in found)
        counts["first"] += first
        counts["best"] += best
        counts["shown"] += shown
        own, b, _ = found[0] if found else ("(accepted)", "", "")
        print(f"| {path.stem} | {', '.join(sorted(words))} | {own[:90]} | {b[:90]} |")
    n = len(specs)
    print(
        f"\n{n} specs: the error's own line names the mistake in {counts['first']}, "
        f"its line or Best Match in {counts['best']}, any line shown in {counts['shown']}"
    )


if __name__ == "__main__":
    main()
