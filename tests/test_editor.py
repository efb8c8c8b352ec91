"""An editor's view of the schema: yaml-language-server, driven headless over stdio (LSP), gives
completions and diagnostics from the file `netspec schema -o` writes and a spec's modeline.

The server is an npm package: `.ci/run` installs it under `.venv/node` when npm is there; the
tests skip without it (tests/test_schema.py reads the same completions from the schema itself).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, invoke

from netspec.layers import KINDS


def _server() -> Path | None:
    """`$YAML_LANGUAGE_SERVER`, the copy .ci/run installs in the venv, or one on PATH."""
    for candidate in (
        os.environ.get("YAML_LANGUAGE_SERVER"),
        Path(sys.prefix) / "node" / "node_modules" / ".bin" / "yaml-language-server",
        shutil.which("yaml-language-server"),
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


SERVER = _server()
pytestmark = pytest.mark.skipif(
    SERVER is None or shutil.which("node") is None,
    reason="yaml-language-server not installed (.ci/run installs it with npm into .venv/node)",
)
SETTINGS = {"yaml": {"validate": True, "completion": True, "schemaStore": {"enable": False}}}
WAIT = 30.0  # seconds any one answer may take before the test fails instead of hanging


class Client:
    """A minimal LSP client: JSON-RPC with Content-Length framing over the server's stdio."""

    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.diagnostics: dict[str, list[dict[str, Any]]] = {}
        self.next_id = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            headers = {}
            while (line := out.readline().decode()) not in ("\r\n", ""):
                key, value = line.split(":", 1)
                headers[key.lower()] = value.strip()
            if not line:
                return
            self.inbox.put(json.loads(out.read(int(headers["content-length"]))))

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
        self.proc.stdin.flush()

    def notify(self, method: str, params: Any) -> None:
        self._send({"method": method, "params": params})

    def _handle(self, message: dict[str, Any]) -> None:
        """Answer the server's own requests; keep the diagnostics it publishes."""
        method = message.get("method")
        if method == "textDocument/publishDiagnostics":
            self.diagnostics[message["params"]["uri"]] = message["params"]["diagnostics"]
        elif method is not None and "id" in message:
            items = (
                message["params"].get("items", []) if method == "workspace/configuration" else []
            )
            result = [SETTINGS.get(i.get("section"), {}) for i in items] if items else None
            self._send({"id": message["id"], "result": result})

    def _pump(self, until) -> Any:
        end = time.monotonic() + WAIT
        while (found := until()) is None:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("yaml-language-server did not answer")
            try:
                message = self.inbox.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            self._last = message
            self._handle(message)
        return found

    def request(self, method: str, params: Any) -> Any:
        self.next_id += 1
        rid = self.next_id
        self._last: dict[str, Any] = {}
        self._send({"id": rid, "method": method, "params": params})
        reply = self._pump(
            lambda: (
                self._last if self._last.get("id") == rid and "method" not in self._last else None
            )
        )
        return reply.get("result")

    def diagnostics_of(self, uri: str, empty_ok: bool) -> list[dict[str, Any]]:
        """The diagnostics published for `uri`; unless `empty_ok`, the first non-empty ones."""
        return self._pump(
            lambda: (
                found
                if (found := self.diagnostics.get(uri)) or (empty_ok and found == [])
                else None
            )
        )

    def close(self) -> None:
        try:
            self.request("shutdown", None)
            self.notify("exit", None)
            self.proc.wait(timeout=5)
        except Exception:  # the server is going away either way
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.reader.join(timeout=5)  # it stops at the end of the server's output
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()


@pytest.fixture(scope="module")
def lsp(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("editor")
    schema = folder / "netspec.schema.json"
    assert invoke("schema", "-o", schema).exit_code == 0
    client = Client([str(SERVER), "--stdio"])
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
        yield client, folder, schema
    finally:
        client.close()


def _open(lsp, name: str, text: str) -> tuple[str, list[str]]:
    """Open `text` under the README's modeline (a path relative to the spec); its uri and lines."""
    client, folder, schema = lsp
    text = f"# yaml-language-server: $schema=./{schema.name}\n{text}"
    uri = (folder / name).as_uri()
    client.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": "yaml", "version": 1, "text": text}},
    )
    return uri, text.split("\n")


def _labels(lsp, uri: str, line: int, col: int) -> set[str]:
    result = lsp[0].request(
        "textDocument/completion",
        {"textDocument": {"uri": uri}, "position": {"line": line, "character": col}},
    )
    items = result["items"] if isinstance(result, dict) else result
    return {item["label"] for item in items}


# The cursor goes after `- `, inside `conv2d:` and inside `train:`: lines ending in spaces.
SPEC = "\n".join(
    [
        "name: demo",
        "input: [1, 28, 28]",
        "layers:",
        "  - conv2d:",
        "      ",
        "  - ",
        "  - dense: {units: 10, activation: }",
        "train:",
        "  data: {source: builtin}",
        "  ",
        "",
    ]
)


def test_completions(lsp):
    uri, lines = _open(lsp, "demo.yaml", SPEC)
    dash = lines.index("  - ")
    inside_conv = lines.index("  - conv2d:") + 1
    inside_train = lines.index("  data: {source: builtin}") + 1
    kinds = _labels(lsp, uri, dash, 4)
    assert {"conv2d", "dense", "maxpool2d", "flatten", "relu", "concat", "add"} <= kinds
    assert {"name", "inputs", "repeat"} <= kinds
    assert {"filters", "kernel", "stride", "padding", "activation"} <= _labels(
        lsp, uri, inside_conv, 6
    )
    assert {"epochs", "optimizer", "loss", "metrics", "callbacks", "batch_size"} <= _labels(
        lsp, uri, inside_train, 2
    )
    dense = next(i for i, line in enumerate(lines) if "activation: }" in line)
    col = lines[dense].index("activation: ") + len("activation: ")
    assert {"relu", "softmax", "sigmoid", "linear"} <= _labels(lsp, uri, dense, col)


def test_diagnostics_on_a_typo_and_none_on_shipped_specs(lsp):
    client = lsp[0]
    typo = (Path(__file__).parent / "typo_specs" / "sofmax.yaml").read_text(encoding="utf-8")
    uri, lines = _open(lsp, "sofmax.yaml", typo)
    found = client.diagnostics_of(uri, empty_ok=False)
    where = next(i for i, line in enumerate(lines) if "activation: sofmax}" in line)
    assert any(d["range"]["start"]["line"] == where and "softmax" in d["message"] for d in found), (
        found
    )
    # Opened after the typo's answer, so the schema is loaded: an empty list is a real verdict.
    for name in ("unet.yaml", "unet_isbi_search.yaml", "mnist_cnn.yaml"):
        text = (REPO / "specs" / name).read_text(encoding="utf-8")
        spec_uri, _ = _open(lsp, name, text)
        assert client.diagnostics_of(spec_uri, empty_ok=True) == [], name


def test_typos_get_their_own_message_and_one_completion_per_kind(lsp):
    """The schema picks a layer item's branch by its kind key: no spurious "Matches a schema
    that is not allowed", no search-space form in messages, one completion per kind."""
    client = lsp[0]
    # All opened, then all answers awaited: the server validates one while the next arrives.
    paths = sorted((Path(__file__).parent / "typo_specs").glob("*.yaml"))
    uris = [_open(lsp, path.name, path.read_text(encoding="utf-8"))[0] for path in paths]
    for path, uri in zip(paths, uris, strict=True):
        messages = [d["message"] for d in client.diagnostics_of(uri, empty_ok=False)]
        assert messages, path.name
        assert not any("Matches a schema that is not allowed" in m for m in messages), messages
        assert not any("search" in m.lower() or "Filters)" in m for m in messages), messages
    uri, lines = _open(lsp, "dash.yaml", "name: demo\ninput: [4]\nlayers:\n  - \n")
    result = client.request(
        "textDocument/completion",
        {"textDocument": {"uri": uri}, "position": {"line": lines.index("  - "), "character": 4}},
    )
    items = result["items"] if isinstance(result, dict) else result
    labels = [item["label"] for item in items]
    assert sorted(k for k in labels if k in KINDS) == sorted(KINDS)  # each kind once
    assert not any(label.endswith((" layer", "Item")) for label in labels), labels
    dense = next(item for item in items if item["label"] == "dense")
    assert "fully connected" in str(dense.get("documentation"))
