"""Docs are tests: every fenced block of README.md and docs/*.md is run or checked.

A block is handled by the HTML comment on the line above it, else by its language:

- `<!-- file: NAME -->`: the block is a file of the page's scratch folder (a spec with mistakes,
  a CSV), used by the page's `output:` blocks, each of which must use one;
- `<!-- output: netspec ARGS -->`: the block is exactly what the command prints (stdout and
  stderr, as a terminal shows them), run in the scratch folder beside `specs/`; the folder's own
  path is cut from the output, since netspec names data files by their absolute path;
- `<!-- not run: REASON -->`: the reason; a test file it names must exist;
- bash: every `netspec` command exists and takes the options shown; a spec it names is validated
  with the line's `--set` values; a `python FILE` names a file of the repository;
- yaml: a spec compiles (`# specs/X.yaml` on its first line: as that file does; `, the train
  section`: with that file's values); anything else parses;
- json: parses; python: the page's blocks run in order in one namespace, in the scratch folder
  (slow when one trains); text, js, csv: need a comment above.
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import typer
import yaml
from helpers import REPO, SHARED_DATA, runner

from netspec import compile_file, compile_text
from netspec.cli import app

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"(?:<!-- ([a-z ]+): (.*?) -->\n)?```(\w*)\n(.*?)^```", re.S | re.M)


# Options renamed in branches not merged yet: the docs already show the new name, and until the
# merge the command still takes the old one. Once merged, the new name is simply an option.
@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    body: str
    marker: str | None  # file, output, not run
    arg: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    return [
        Block(page, text.count("\n", 0, m.start(3)) + 1, m[3] or "text", m[4], m[1], m[2] or "")
        for m in FENCE.finditer(text)
    ]


ALL = [b for page in PAGES for b in blocks(page)]


def of(*langs: str, marker: str | None = None) -> list:
    chosen = [b for b in ALL if b.lang in langs and b.marker == marker]
    return [pytest.param(b, id=b.id) for b in chosen]


def page_name(page: Path) -> str:
    return str(page.relative_to(REPO))


# --- commands and options --------------------------------------------------------------------


@cache
def cli() -> typer.core.TyperGroup:
    return typer.main.get_command(app)


def options(command: str | None) -> set[str]:
    cmd = cli() if command is None else cli().commands[command]
    found = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}
    return (
        found
        | {"--help"}
        | ({"--install-completion", "--show-completion"} if not command else set())
    )


def shell_commands(body: str) -> list[list[str]]:
    """Each simple command of a shell block as tokens; a quoted `bash -c "..."` is opened."""
    body = body.replace("\\\n", " ")
    found: list[list[str]] = []
    for line in body.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for token in [*lexer, ";"]:
            if token and set(token) <= set(";&|()"):
                if current:
                    found.append(current)
                current = []
            elif " netspec " in f" {token} " and " " in token:
                found.extend(shell_commands(token))
            elif not current and token in ("do", "then", "else", "time"):
                continue
            else:
                current.append(token)
    return found


def netspec_calls(body: str) -> list[list[str]]:
    """The arguments of every `netspec ...` (or `python -m netspec ...`) in a shell block."""
    calls = []
    for tokens in shell_commands(body):
        for i, token in enumerate(tokens[:-1]):
            if token == "netspec" and (i == 0 or tokens[i - 1] == "-m"):
                calls.append(tokens[i + 1 :])
                break
    return calls


def check_options(args: list[str]) -> None:
    command = None if args[0].startswith("-") else args[0]
    assert command is None or command in cli().commands, f"no command netspec {command}"
    known = options(command)
    for arg in args[1:] if command else args:
        if arg.startswith("-") and len(arg) > 1 and not arg[1].isdigit():
            name = arg.split("=", 1)[0]
            assert name in known, f"netspec {command} takes no {name}"


SHELL = of("bash", "sh")


@pytest.mark.parametrize("block", SHELL)
def test_shell_commands_exist_with_their_options(block: Block) -> None:
    for tokens in shell_commands(block.body):
        if tokens[0] == "python" and tokens[1].endswith(".py"):
            assert (REPO / tokens[1]).is_file(), tokens[1]
    for args in netspec_calls(block.body):
        assert "--onnx" not in args, "export --onnx is gone"
        check_options(args)


@pytest.mark.parametrize("block", SHELL)
def test_specs_in_shell_commands_validate_with_their_overrides(block: Block) -> None:
    for args in netspec_calls(block.body):
        spec = next((a for a in args[1:2] if a.startswith("specs/") and a.endswith(".yaml")), None)
        if spec is None or not (REPO / spec).is_file():
            continue
        # A shell variable (a loop's seed) stands for a number.
        sets = [
            re.sub(r"\$\w+", "0", a) for i, a in enumerate(args) if i and args[i - 1] == "--set"
        ]
        result = runner.invoke(app, ["validate", str(REPO / spec), *(f"--set={s}" for s in sets)])
        assert result.exit_code == 0, (args, result.output)


# --- yaml and json ---------------------------------------------------------------------------


@pytest.mark.parametrize("block", of("yaml"))
def test_yaml_blocks_compile_or_parse(block: Block) -> None:
    documents = list(yaml.safe_load_all(block.body))
    first = block.body.splitlines()[0]
    named = re.match(r"# (specs/\S+\.yaml)", first)
    if named and "the train section" in first:  # an excerpt: each value shown is the file's
        shown = documents[0]["train"]
        spec = yaml.safe_load((REPO / named[1]).read_text())["train"]
        assert {k: spec.get(k) for k in shown} == shown
        return
    if not (isinstance(documents[0], dict) and "layers" in documents[0]):
        return  # not a spec (a Kubernetes manifest, a fragment of search entries): it parses
    graph = compile_text(block.body, block.id)
    if named:  # the block is that spec file, perhaps without its comments
        full = compile_file(REPO / named[1])
        assert graph.output.shape == full.output.shape
        assert sum(n.params for n in graph.nodes) == sum(n.params for n in full.nodes)


@pytest.mark.parametrize("block", of("json"))
def test_json_blocks_parse(block: Block) -> None:
    json.loads(block.body)


@pytest.mark.parametrize("block", of("text", "js", "csv", "python", "yaml", "json", "bash", "sh"))
def test_every_other_block_has_a_handler(block: Block) -> None:
    assert block.lang not in ("text", "js", "csv"), "a text block needs output: or not run: above"


# --- files and outputs -----------------------------------------------------------------------


# The data folders pages name, as the walk-throughs that run them lay them out (import.md's
# retraining reads `cats_dogs/`, the shared photos): a summary counts the data it finds.
PAGE_DATA = {"cats_dogs": SHARED_DATA / "cats_dogs" / "test_set"}


def scratch(page: Path, tmp_path: Path) -> Path:
    """A folder holding the page's `file:` blocks, `specs/` (a link to the repository's) and the
    shared data folders the page names (PAGE_DATA; the test skips where they are absent)."""
    (tmp_path / "specs").symlink_to(REPO / "specs")
    text = page.read_text(encoding="utf-8")
    for name, folder in PAGE_DATA.items():
        if f"path: {name}" in text:
            if not folder.is_dir():
                pytest.skip(f"{page.name} reads {name}/, the shared photos ({folder}): absent")
            (tmp_path / name).symlink_to(folder)
    for b in blocks(page):
        if b.marker == "file":
            (tmp_path / b.arg).write_text(b.body, encoding="utf-8")
    return tmp_path


def output_param(b: Block):
    slow = b.arg.startswith("netspec train")
    return pytest.param(b, id=b.id, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("block", [output_param(b) for b in ALL if b.marker == "output"])
def test_output_blocks_are_what_netspec_prints(
    block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_plots
) -> None:
    args = shlex.split(block.arg)
    assert args[0] == "netspec"
    monkeypatch.chdir(scratch(block.page, tmp_path))
    result = runner.invoke(app, args[1:])
    assert "Traceback" not in result.output
    printed = result.output.replace(f"{tmp_path}/", "")
    assert printed.rstrip("\n") == block.body.rstrip("\n")


@pytest.mark.parametrize("block", of("yaml", "csv", "text", marker="file"))
def test_file_blocks_are_used_by_an_output_block(block: Block) -> None:
    users = [b.arg for b in blocks(block.page) if b.marker == "output"]
    users += [b.body for b in blocks(block.page) if b.marker == "file" and b != block]
    name = re.compile(rf"(?<![\w./-]){re.escape(block.arg)}(?![\w/-])")
    assert any(name.search(text) for text in users), block.arg  # houses.yaml reads houses.csv


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in ALL if b.marker == "not run"])
def test_blocks_not_run_say_why(block: Block) -> None:
    assert len(block.arg) > 10
    for test in re.findall(r"tests/\w+\.py", block.arg):
        assert (REPO / test).is_file(), test


def test_markers_are_known() -> None:
    assert {b.marker for b in ALL} <= {None, "file", "output", "not run"}


# --- python ----------------------------------------------------------------------------------


def python_pages() -> list:
    params = []
    for page in PAGES:
        code = [b.body for b in blocks(page) if b.lang == "python" and b.marker is None]
        if code:
            trains = any(re.search(r"\.train\(", c) for c in code)
            params.append(
                pytest.param(page, id=page_name(page), marks=[pytest.mark.slow] if trains else [])
            )
    return params


def run_python(page: Path, tmp_path: Path) -> dict:
    namespace: dict = {"__name__": "docs"}
    for b in blocks(page):
        if b.lang == "python" and b.marker is None:
            exec(compile(b.body, b.id, "exec"), namespace)
    return namespace


@pytest.mark.parametrize("page", python_pages())
def test_python_blocks_run(page: Path, tmp_path: Path, monkeypatch, no_plots, capsys) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("sklearn")
    monkeypatch.chdir(scratch(page, tmp_path))
    namespace = run_python(page, tmp_path)
    out = capsys.readouterr().out
    if page.name == "python.md":  # what its comments promise
        assert 'Model: "quickstart"' in out and "Total params: 151,306" in out
        assert "'input': 'inputs[0][0]'" in out
        run = namespace["run"]
        assert run.dir == Path("runs/quickstart-py") and len(run.history) == 3
        assert (tmp_path / "runs" / "quickstart-py" / "model.onnx").is_file()
        results = namespace["predictor"].predict(namespace["digits"])  # the module agrees
        labels = [r["predictions"][0]["label"] for r in results]
        assert labels == [str(int(k)) for k in namespace["probs"].argmax(1)]


# Python arguments renamed in branches not merged yet (the new name: the old one).
def test_python_signatures_in_prose_are_the_real_ones() -> None:
    """docs/python.md's signatures (`name(a=None, *, b=1)`) name real arguments."""
    import netspec
    from netspec.api import Network
    from netspec.run_api import Run

    functions = {
        "load_spec": netspec.load_spec,
        "train": Network.train,
        "to_torch": Network.to_torch,
        "export_onnx": (Run.export_onnx, Network.export_onnx),
        "evaluate": Run.evaluate,
        "Predictor": netspec.Predictor,
        "predict": (netspec.Predictor.predict, Run.predict),
    }
    text = (REPO / "docs" / "python.md").read_text(encoding="utf-8")
    shown = re.findall(r"`(?:\w+\.)*(\w+)\(([^`]*=[^`]*)\)`", text)
    assert {name for name, _ in shown} == set(functions)
    for name, args in shown:
        owners = functions[name] if isinstance(functions[name], tuple) else (functions[name],)
        real = {p for f in owners for p in inspect.signature(f).parameters}
        if "*" not in args:  # a call, not the signature: load_spec and train take overrides
            continue
        for arg in re.findall(r"(\w+)=", args):
            assert arg in real, f"{name}() takes no {arg}="


# --- every page ------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=page_name)
def test_links_reach_files_and_headings(page: Path) -> None:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), target
        if anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", file.read_text(encoding="utf-8"), flags=re.M)
            assert anchor in {slug(h) for h in headings}, target


MACHINE = re.compile(
    r"/work/|/root/|/home/|/tmp/|this (?:2-core )?(?:machine|CPU)|busy machine|quiet machine"
)


@pytest.mark.parametrize("page", PAGES, ids=page_name)
def test_no_page_names_the_machine_it_was_written_on(page: Path) -> None:
    assert not MACHINE.findall(page.read_text(encoding="utf-8"))


def test_every_page_is_linked_from_the_readme() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in readme, page.name
