"""What yaml-language-server says about the one-mistake specs (tests/typo_specs) and offers to complete.

For each typo spec (its mistake found as in schema_messages.py): whether a diagnostic names the
mistake (its message holds the wrong word, or it starts on the mistaken line and is not a
generic one), whether a spurious "Matches a schema that is not allowed" appears, and whether a
message leaks the search-space form (`{search: ...}`, "object(...)"). Then the completions
after `- ` (how many, how many labels repeated, item keys mixed in) and inside a flow mapping
(`- conv2d: {filters: 8, }`).

    python benchmarks/editor_messages.py        # needs yaml-language-server (.ci/run installs it)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE)]

from schema_messages import TYPOS, mistake  # noqa: E402
from test_editor import SERVER, SETTINGS, Client  # noqa: E402

from netspec.items import META_KEYS  # noqa: E402
from netspec.schema import json_schema  # noqa: E402

GENERIC = ("Matches a schema that is not allowed", "Incorrect type. Expected")


def open_doc(client: Client, folder: Path, name: str, text: str) -> tuple[str, list[str]]:
    text = f"# yaml-language-server: $schema=./netspec.schema.json\n{text}"
    uri = (folder / name).as_uri()
    client.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": "yaml", "version": 1, "text": text}},
    )
    return uri, text.split("\n")


def labels(client: Client, uri: str, line: int, col: int) -> list[str]:
    result = client.request(
        "textDocument/completion",
        {"textDocument": {"uri": uri}, "position": {"line": line, "character": col}},
    )
    items = result["items"] if isinstance(result, dict) else result
    return [item["label"] for item in items]


def mistaken_line(lines: list[str], words: set[str]) -> int | None:
    return next(
        (
            i
            for i, x in enumerate(lines)
            if not x.lstrip().startswith("#") and any(w in x.split("#")[0] for w in words)
        ),
        None,
    )


def main() -> None:
    if SERVER is None:
        sys.exit("yaml-language-server not installed (.ci/run installs it into .venv/node)")
    folder = Path(tempfile.mkdtemp(prefix="editor-"))
    (folder / "netspec.schema.json").write_text(json.dumps(json_schema()), encoding="utf-8")
    client = Client([str(SERVER), "--stdio"])
    counts = Counter()
    try:
        client.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": folder.as_uri(),
                "capabilities": {"workspace": {"configuration": True}},
            },
        )
        client.notify("initialized", {})
        client.notify("workspace/didChangeConfiguration", {"settings": SETTINGS})
        specs = sorted(TYPOS.glob("*.yaml"))
        print("| spec | mistake | named | spurious | leak | messages |\n|---|---|---|---|---|---|")
        for path in specs:
            words = mistake(path)
            uri, lines = open_doc(client, folder, path.name, path.read_text(encoding="utf-8"))
            found = client.diagnostics_of(uri, empty_ok=False)
            where = mistaken_line(lines, words)
            messages = [d["message"] for d in found]
            named = any(
                any(w in d["message"] for w in words)
                or (d["range"]["start"]["line"] == where and not d["message"].startswith(GENERIC))
                for d in found
            )
            spurious = any("Matches a schema that is not allowed" in m for m in messages)
            leak = any("search" in m.lower() or "object(" in m for m in messages)
            counts.update(named=named, spurious=spurious, leak=leak)
            shown = " / ".join(m.replace("\n", " ")[:70] for m in messages)[:200]
            print(
                f"| {path.stem} | {', '.join(sorted(words))} | {named} | {spurious} | {leak} | {shown} |"
            )
        print(
            f"\n{len(specs)} specs: a diagnostic names the mistake in {counts['named']}; "
            f"spurious 'Matches a schema that is not allowed' in {counts['spurious']}; "
            f"the search form leaks into {counts['leak']}"
        )
        text = "name: demo\ninput: [1, 28, 28]\nlayers:\n  - \n  - conv2d: {filters: 8, }\n"
        uri, lines = open_doc(client, folder, "complete.yaml", text)
        dash = lines.index("  - ")
        after_dash = labels(client, uri, dash, 4)
        repeated = sum(n - 1 for n in Counter(after_dash).values() if n > 1)
        keys = [x for x in after_dash if x in META_KEYS]
        flow = lines.index("  - conv2d: {filters: 8, }")
        inside = labels(client, uri, flow, lines[flow].index("}"))
        print(
            f"after `- `: {len(after_dash)} completions, {repeated} repeated labels, "
            f"item keys among them: {keys}"
        )
        print(f"inside `{{filters: 8, }}`: {len(inside)} completions {sorted(inside)[:8]}")
        dense = "name: demo\ninput: [4]\nlayers:\n  - Dense: {units: 2}\n"
        uri, _ = open_doc(client, folder, "dense.yaml", dense)
        print("`- Dense:` gives:", [d["message"] for d in client.diagnostics_of(uri, False)])
    finally:
        client.close()


if __name__ == "__main__":
    main()
