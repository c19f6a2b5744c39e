"""What the console's flow pages stand on, without HTTP: which file a flow's name maps to, an edit
checked with the other files, the atomic write (bot/flows/editing.py); what each message costs
(bot/flows/message_costs.py); what an edit does to people waiting (bot/flows/impact.py); which
conversation tests start a flow (bot/flowtests.starts)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bot.flows.editing import EditRefused, FlowFolder, check_draft, digest, normalised, save_draft, write_atomically
from bot.flows.impact import edit_impact
from bot.flows.loader import check_folder
from bot.flows.message_costs import is_sent, message_costs
from bot.flows.schema import Flow
from bot.flows.yamlsource import read_yaml
from bot.flowtests import CaseSpec, starts
from tests.conftest import write_flows

COUNT = """\
flow: count
triggers: [COUNT]
start: ask
states:
  ask:
    say: "Pick a number."
    replies:
      - number: {min: 1, max: 9}
        go: done
  done: {say: "Done."}
"""


def folder_of(tmp_path: Path, **files: str) -> FlowFolder:
    return FlowFolder.read(write_flows(tmp_path / "flows", {f"{name}.yaml": text for name, text in files.items()}))


def test_a_flow_is_edited_in_its_own_file_whatever_that_is_called(tmp_path: Path) -> None:
    folder = folder_of(tmp_path, counting=COUNT)
    assert folder.file_for("count") == folder.folder / "counting.yaml"
    assert folder.file_for("other") == folder.folder / "other.yaml"  # a new flow: NAME.yaml
    (folder.folder / "fixme.yml").write_text("flow: fixme\nstates: [\n")  # no valid flow yet: fix it here
    assert FlowFolder.read(folder.folder).file_for("fixme") == folder.folder / "fixme.yml"
    with pytest.raises(EditRefused, match="counting.yaml holds flow 'count'"):
        folder.file_for("counting")
    with pytest.raises(EditRefused, match="program.yaml is the program file"):
        folder.file_for("program")
    for name in ("../x", "x/y", "x.yaml", "", "1x", "x" * 201, "é"):
        with pytest.raises(EditRefused, match="is not a flow name"):
            folder.file_for(name)


def test_a_link_is_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text(COUNT.replace("flow: count", "flow: linked"))
    folder = folder_of(tmp_path, counting=COUNT)
    (folder.folder / "linked.yaml").symlink_to(outside)
    with pytest.raises(EditRefused, match="not a plain file"):
        FlowFolder.read(folder.folder).file_for("linked")


def test_errors_other_files_already_had_do_not_block_an_edit_but_new_ones_do(tmp_path: Path) -> None:
    folder = folder_of(tmp_path, counting=COUNT, broken="flow: broken\nstart: nowhere\nstates: {a: {say: hi}}\n")
    assert any(problem.file.endswith("broken.yaml") for problem in folder.problems)
    draft = check_draft(folder, "count", COUNT.replace("Pick a number.", "Pick one."))
    assert draft.blocking == [] and draft.compiled is not None and "n_ask" in (draft.mermaid or "")
    assert any(problem.file.endswith("broken.yaml") for problem in draft.problems)  # still shown
    clash = check_draft(folder, "count", COUNT.replace("flow: count", "flow: count\ndescription: x")
                        .replace("[COUNT]", "[COUNT, HELP]"))
    assert clash.blocking and clash.compiled is None  # HELP is the program's: an error of its own


def test_a_draft_that_does_not_read_is_located_in_its_own_file(tmp_path: Path) -> None:
    folder = folder_of(tmp_path, counting=COUNT)
    draft = check_draft(folder, "count", "flow: count\nstates:\n\tbad: 1\n")
    [problem] = draft.own
    assert (Path(problem.file).name, problem.line) == ("counting.yaml", 3) and draft.blocking == [problem]
    assert draft.flow is None and draft.mermaid is None


def test_saving_checks_the_base_and_writes_atomically(tmp_path: Path) -> None:
    folder = folder_of(tmp_path, counting=COUNT)
    file = folder.folder / "counting.yaml"
    file.chmod(0o600)
    draft = check_draft(folder, "count", COUNT.replace("Done.", "All done."))
    with pytest.raises(EditRefused, match="changed on disk"):
        save_draft(draft, base=digest("something else"))
    save_draft(draft, base=digest(COUNT))
    assert file.read_text() == COUNT.replace("Done.", "All done.") and stat.S_IMODE(file.stat().st_mode) == 0o600
    new = check_draft(folder, "fresh", COUNT.replace("flow: count", "flow: fresh").replace("[COUNT]", "[FRESH]"))
    save_draft(new, base="")
    assert stat.S_IMODE((folder.folder / "fresh.yaml").stat().st_mode) == 0o644
    assert sorted(path.name for path in folder.folder.iterdir()) == ["counting.yaml", "fresh.yaml", "program.yaml"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "x.yaml"
    target.mkdir()  # a rename over a folder fails
    with pytest.raises(OSError):
        write_atomically(target, "flow: x\n")
    assert [path.name for path in tmp_path.iterdir()] == ["x.yaml"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_said_plainly(tmp_path: Path) -> None:
    folder = folder_of(tmp_path, counting=COUNT)
    draft = check_draft(folder, "count", COUNT.replace("Done.", "All done."))
    folder.folder.chmod(0o500)
    try:
        with pytest.raises(EditRefused, match="cannot write .*counting.yaml"):
            save_draft(draft, base=digest(COUNT))
    finally:
        folder.folder.chmod(0o700)


def test_text_is_saved_with_git_line_ends() -> None:
    assert normalised("a\r\nb\rc") == "a\nb\nc\n" and normalised("a\n") == "a\n" and normalised("") == ""


MESSAGES = """\
flow: costs
triggers: [COSTS]
start: fetch
states:
  fetch:
    say: "A state called fetch still says things ’"
    notify: {to: "+15550001111", say: "Someone asked: {{ message }}"}
    go: media
  media:
    say: "{{ sender }} here is the map"
    media: ["https://example.com/map.png"]
"""


def test_every_sent_text_is_measured_by_where_it_is_not_by_names(tmp_path: Path) -> None:
    write_flows(tmp_path / "flows", {"costs.yaml": MESSAGES})
    _, [parsed] = check_folder(tmp_path / "flows")
    found = [(message.state, message.where, message.label, message.templated, message.forced_by)
             for message in message_costs(parsed.model, parsed.source)]
    assert found == [
        ("fetch", "say[0]", "1 segment, UCS-2", False, "'’' (U+2019 RIGHT SINGLE QUOTATION MARK)"),
        ("fetch", "notify.say[0]", "1 segment, GSM-7", True, None),
        ("media", "say[0]", "MMS (with pictures)", True, None)]
    assert not is_sent(("states", "x", "notify", "to")) and not is_sent(("states", "x", "fetch", "url"))
    assert is_sent(("states", "x", "fetch", "not_found")) and is_sent(("anywhere", 0, "say", 0))


def flow(text: str) -> Flow:
    return Flow.model_validate(read_yaml(text)[0])


def test_impact_names_removed_states_and_states_that_stop_waiting() -> None:
    before = flow(COUNT)
    after = flow(COUNT.replace("  done: {say: \"Done.\"}", "  finished: {say: \"Done.\"}").replace("go: done",
                                                                                                 "go: finished"))
    [removed] = edit_impact(before, after, {"done": 2, "ask": 0}, "Sorry, we start over.")
    assert (removed.state, removed.people) == ("done", 2) and "(\"Sorry, we start over.\")" in removed.message
    stops = flow(COUNT.replace("""    replies:
      - number: {min: 1, max: 9}
        go: done
""", "    go: done\n"))
    [effect] = edit_impact(before, stops, {"ask": 1}, "reset")
    assert effect.message.startswith("1 conversation waits in state 'ask', which no longer waits for a reply")
    assert edit_impact(before, before, {"ask": 5, "done": 1}, "reset") == []
    assert edit_impact(None, before, {}, "reset") == []


def test_a_test_belongs_to_the_flows_it_starts() -> None:
    case = CaseSpec.model_validate({"name": "t", "turns": [{"send": " count! "}, {"start": "survey"}]})
    assert starts(case, "count", ["COUNT"]) and starts(case, "survey", [])
    assert not starts(case, "other", ["OTHER"])


def test_aliases_that_multiply_are_refused_not_expanded(tmp_path: Path) -> None:
    """A "billion laughs" document (each anchor used nine times in the next) would take the reader
    hours; the console checks what is typed, so it must stop at once, located."""
    text = 'flow: count\nlol: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    previous = "a"
    for name in "bcdefghi":
        text += f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]\n"
        previous = name
    draft = check_draft(folder_of(tmp_path, counting=COUNT), "count", text)
    [problem] = draft.own
    assert "over 100,000 values once its aliases (*name) are expanded" in problem.message and draft.blocking
