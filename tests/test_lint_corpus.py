"""A corpus of broken flow files, one problem each, linted through the real loader.

Each file in ``tests/broken_flows/`` documents itself on its first line::

    # expect: SEVERITY LINE[:COL] MESSAGE FRAGMENT[ | hint: HINT FRAGMENT]

and may pass lint options on its second line (``# options: --assume-var-length 40``). The test
lints the file on its own (``lint_paths([file])``, no program file needed) and asserts that the
file produces exactly that one finding, at exactly that place. Line numbers count the comment
lines, as an editor does.

Where the code is wrong, the expectation stays what it should be and the case is marked
``xfail(strict=True)`` in ``KNOWN_BUGS`` below, so fixing the bug turns it into a loud XPASS.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.flows.checks import CheckOptions
from bot.flows.loader import lint_paths
from bot.flows.problems import Problem

CORPUS = Path(__file__).resolve().parent / "broken_flows"

_EXPECT = re.compile(
    r"^# expect: (?P<severity>error|warning) (?P<line>\d+)(?::(?P<col>\d+))? (?P<message>.+?)"
    r"(?: \| hint: (?P<hint>.+))?$"
)

#: Files whose correct expectation the code does not meet yet: file name -> what is wrong.
KNOWN_BUGS: dict[str, str] = {}


@dataclass(frozen=True)
class Expectation:
    severity: str
    line: int
    col: int | None
    message: str
    hint: str | None
    options: CheckOptions

    def matches(self, problem: Problem) -> bool:
        return (problem.severity == self.severity and self.message in problem.message
                and (self.hint is None or self.hint in problem.hint))


def read_expectation(path: Path) -> Expectation:
    lines = path.read_text(encoding="utf-8").splitlines()
    found = _EXPECT.match(lines[0]) if lines else None
    assert found, f"{path.name}: first line must be '# expect: SEVERITY LINE:COL MESSAGE', got {lines[:1]}"
    options = CheckOptions()
    if len(lines) > 1 and lines[1].startswith("# options:"):
        options = _options(shlex.split(lines[1].removeprefix("# options:")))
    return Expectation(found["severity"], int(found["line"]), int(found["col"]) if found["col"] else None,
                       found["message"], found["hint"], options)


def _options(words: list[str]) -> CheckOptions:
    names = {"--max-segments": "max_segments", "--assume-var-length": "assumed_variable_length"}
    values: dict[str, int] = {}
    for flag, value in zip(words[::2], words[1::2], strict=True):
        values[names[flag]] = int(value)
    return CheckOptions(**values)


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.yaml"))


def _case(path: Path) -> object:
    marks = ([pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[path.name])]
             if path.name in KNOWN_BUGS else [])
    return pytest.param(path, id=path.stem, marks=marks)


def assert_single_finding(problems: list[Problem], expected: Expectation, file: Path) -> None:
    listing = "\n".join(map(str, problems)) or "(no findings)"
    matching = [problem for problem in problems if expected.matches(problem)]
    assert matching, f"no {expected.severity} containing {expected.message!r}" + (
        f" with hint {expected.hint!r}" if expected.hint else "") + f"; lint said:\n{listing}"
    [problem] = matching
    assert problem.file == str(file)
    where = (problem.line, problem.col) if expected.col is not None else (problem.line,)
    wanted = (expected.line, expected.col) if expected.col is not None else (expected.line,)
    assert where == wanted, f"finding at {problem.line}:{problem.col}, expected at " \
                            f"{':'.join(map(str, wanted))}:\n{listing}"
    assert problems == [problem], f"the file should have exactly one problem; lint said:\n{listing}"


def test_corpus_is_complete() -> None:
    files = corpus_files()
    assert len(files) >= 25
    expectations = [read_expectation(path) for path in files]  # every file documents itself
    assert {"error", "warning"} == {expectation.severity for expectation in expectations}


@pytest.mark.parametrize("path", [_case(path) for path in corpus_files()])
def test_broken_flow(path: Path) -> None:
    expected = read_expectation(path)
    assert_single_finding(lint_paths([path], expected.options), expected, path)


def test_duplicate_trigger_across_two_files() -> None:
    """Linted as a folder (with its program file), as the server loads it."""
    folder = CORPUS / "duplicate_trigger"
    [documented] = [path for path in sorted(folder.glob("*.yaml"))
                    if path.read_text(encoding="utf-8").startswith("# expect:")]
    expected = read_expectation(documented)
    assert_single_finding(lint_paths([folder], expected.options), expected, documented)


def test_quoted_true_is_a_word(tmp_path: Path) -> None:
    """The unquoted ``true`` of boolean_keyword_unquoted.yaml is its only problem: quoted, it is a word."""
    text = (CORPUS / "boolean_keyword_unquoted.yaml").read_text(encoding="utf-8")
    assert "[true, T]" in text
    fixed = tmp_path / "quoted.yaml"
    fixed.write_text(text.replace("[true, T]", "['true', T]"), encoding="utf-8")
    assert lint_paths([fixed]) == []


def test_long_templated_say_fits_with_the_default_assumed_length() -> None:
    """long_templated_say.yaml is over the limit only because of its stated variable length."""
    path = CORPUS / "long_templated_say.yaml"
    assert read_expectation(path).options == CheckOptions(assumed_variable_length=40)
    assert lint_paths([path], CheckOptions(assumed_variable_length=10)) == []


# -- issue 11: {{ env.NAME }} is an allow-list (FLOW_ENV) -----------------------------------------

ENV_FLOW = """\
flow: env_reader
triggers: [ENV]
start: show
states:
  show:
    say:
      - "Orders: {{ env.ORDERS_API | default: '/demo' }}"
      - "Password: {{ env.MYSQL_PWD }}"
      - "{% if env['SHOP_NAME'] %}Shop{% endif %}"
"""


def test_env_name_not_in_flow_env_is_a_warning_naming_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "env_reader.yaml"
    path.write_text(ENV_FLOW, encoding="utf-8")
    problems = lint_paths([path], CheckOptions(allowed_env=frozenset({"ORDERS_API"})))
    assert [(problem.severity, problem.line) for problem in problems] == [("warning", 8), ("warning", 9)]
    first, second = problems
    assert "{{ env.MYSQL_PWD }}" in first.message and "FLOW_ENV" in first.message
    assert "MYSQL_PWD" in first.hint and "FLOW_ENV" in first.hint
    assert "{{ env.SHOP_NAME }}" in second.message
    assert lint_paths([path], CheckOptions(allowed_env=frozenset({"ORDERS_API", "MYSQL_PWD", "SHOP_NAME"}))) == []
    assert lint_paths([path]) == []  # the loader's default knows no allow-list: only lint and the server pass it


def test_lint_command_checks_env_names_against_flow_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from bot import cli

    path = tmp_path / "env_reader.yaml"
    path.write_text(ENV_FLOW, encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.delenv("FLOW_ENV", raising=False)
    assert cli.main(["lint", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "MYSQL_PWD" in out and "SHOP_NAME" in out and "ORDERS_API" not in out  # the default allows ORDERS_API
    assert "0 errors, 2 warnings" in err
    monkeypatch.setenv("FLOW_ENV", "ORDERS_API,MYSQL_PWD,SHOP_NAME")
    assert cli.main(["lint", str(path)]) == 0
    assert "0 errors, 0 warnings" in capsys.readouterr().err


# -- issue 11: a text that renders a value of any length ------------------------------------------

AS_THE_BOT = CheckOptions.of_the_bot(["ORDERS_API", "ONCALL_NUMBER"])  # what lint and the server check

GROWING_FLOW = """\
flow: growing
triggers: [GROW]
start: ask
states:
  ask:
    say: "Order number, and a note?"
    replies:
      - pattern: '^\\d{6}$'
        save: order
        go: lookup
      - pattern: '(?s).+'
        save: note
        go: lookup
    otherwise: "Six digits, please."
  lookup:
    fetch:
      url: "/demo/orders/{{ order | default: '000000' }}"
      save: result
      fallback: "Down."
    say:
      - "Order {{ order }} is {{ result.status }}."
      - "{{ result.detail | truncate: 200 }} {{ note | truncatewords: 20 }} ({{ result.items | size }} items)"
      - "You wrote: {{ note }}"
      - "Your text: {{ message }}"
"""


def test_unbounded_value_in_a_text_is_a_warning_unless_truncated(tmp_path: Path) -> None:
    path = tmp_path / "growing.yaml"
    path.write_text(GROWING_FLOW, encoding="utf-8")
    problems = [problem for problem in lint_paths([path], AS_THE_BOT) if "any length" in problem.message]
    assert [(problem.line, problem.severity) for problem in problems] == [(21, "warning"), (23, "warning"),
                                                                          (24, "warning")]
    first, second, third = problems
    assert "{{ result.status }}" in first.message and "lookup" in first.message
    assert "truncate" in first.hint and "10 SMS segments" in first.message
    assert "{{ note }}" in second.message and "reply" in second.message
    assert "{{ message }}" in third.message
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(GROWING_FLOW.replace("{{ result.status }}", "{{ result.status | truncate: 30 }}")
                     .replace("{{ note }}", "{{ note | truncate: 100 }}")
                     .replace("{{ message }}", "{{ message | truncate: 100 }}"), encoding="utf-8")
    assert [problem for problem in lint_paths([fixed], AS_THE_BOT) if "any length" in problem.message] == []
    assert lint_paths([path]) == []  # the loader on its own does not know the bot's cap: only lint and the server


def test_a_notify_text_of_any_length_is_a_warning_too(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("""\
flow: agent
triggers: [AGENT]
start: ask
states:
  ask:
    say: "What do you need?"
    replies:
      - any_of: [parcel, refund]
        save: request
        go: handed_over
    otherwise: "Tell me more."
  handed_over:
    notify:
      to: "+15550009999"
      say: "Request: {{ request }}"
    say: "Thanks."
""", encoding="utf-8")
    [problem] = [problem for problem in lint_paths([path], AS_THE_BOT) if "any length" in problem.message]
    assert problem.line == 15 and "{{ request }}" in problem.message
