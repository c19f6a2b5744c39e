"""Import a Twilio Studio flow export (JSON) as a flow file (YAML), with a conversation test.

    python -m bot import-studio FLOW.json -o flows/NAME.yaml --trigger WORD [--stub]

Studio widgets become states of the same name (in the export's order) and their transitions
become ``go``/``replies``/``branch`` targets; Studio's Liquid templates are kept as they are,
because the engine fills in the names they read (``widgets.*``, ``flow.variables.*``,
``trigger.message.*``, ``contact.channel.address``). What cannot run here (voice widgets,
``send-to-flex``, …) is listed by widget name and type: the import refuses it, or with
``stub`` replaces each such widget by a state that says it is not supported.

The output is deterministic (the same export gives the same bytes), so imports diff well in git.
The conversation test is found by walking the converted flow: each way out of a ``branch`` that
tests a reply gets a reply chosen to take it; lookups whose address is fixed are stubbed (once
succeeding, once failing), and the walk stops, with a note, where it would need the network,
another flow or time to pass. See docs/studio.md.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from liquid import Environment, StrictDefaultUndefined
from liquid.exceptions import LiquidError

from bot.engine import store_at
from bot.flows.yamlsource import read_yaml
from bot.keywords import COMPLIANCE_WORDS, normalise, parse_number, trim

END = "end"  # our built-in state that ends a conversation
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # flow names
STATE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")  # state names; also each later part of a dotted path
WAIT_PATTERN = "(?s).*"  # a send-and-wait-for-reply takes any reply
HTTP_TIMEOUT = "10s"
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: Studio's split condition types; our ``branch`` cases use the same names.
CONDITIONS = ("equal_to", "not_equal_to", "matches_any_of", "does_not_match_any_of", "contains",
              "does_not_contain", "starts_with", "does_not_start_with", "regex", "is_blank", "is_not_blank",
              "less_than", "greater_than")
BLANK_CONDITIONS = ("is_blank", "is_not_blank")
_OPPOSITE = {"not_equal_to": "equal_to", "does_not_match_any_of": "matches_any_of", "does_not_contain": "contains",
             "does_not_start_with": "starts_with", "is_not_blank": "is_blank"}
#: The Trigger's events, in the order an entry is looked for.
ENTRY_EVENTS = ("incomingMessage", "incomingConversationMessage", "incomingParent", "incomingRequest",
                "incomingCall")
ENTRY_WORDS = {
    "incomingMessage": "an incoming message",
    "incomingConversationMessage": "an incoming Conversations message",
    "incomingParent": "a parent flow (Run Subflow)",
    "incomingRequest": "the REST API (an execution started by your own code)",
    "incomingCall": "an incoming call",
}
TEMPLATE_NAMES = ("trigger.message.Body", "trigger.message.From", "trigger.message.To",
                  "contact.channel.address", "flow.channel.address")

TEST_SENDER = "+15551234567"  # the number conversation tests text from (bot.flowtests.DEFAULT_SENDER)
TEST_BOT_NUMBER = "+15550001111"  # the number they text (bot.simulator.Simulation.text)
MAX_STEPS = 25  # states one turn may move through (bot.engine.MAX_STEPS_PER_TURN)
MAX_REPLIES = 10  # messages one turn may send (bot.engine.MAX_REPLIES_PER_TURN)
MAX_TESTS = 40
MAX_TURNS = 15


class StudioError(Exception):
    """The file cannot be imported; the message says why, in words a Studio user knows."""


@dataclass(frozen=True)
class Unsupported:
    """A widget this bot cannot run, and why."""

    widget: str
    type: str
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.widget} ({self.type})" + (f": {self.reason}" if self.reason else "")


class UnsupportedWidgets(StudioError):
    def __init__(self, items: Sequence[Unsupported]) -> None:
        self.items = list(items)
        lines = "\n".join(f"  {item}" for item in self.items)
        super().__init__(f"this flow has {len(self.items)} widget(s) that cannot run here:\n{lines}\n"
                         "(import with --stub to replace them with states that say so; see docs/studio.md)")


@dataclass(frozen=True)
class Options:
    name: str  # the flow's name
    triggers: tuple[str, ...] = ()
    default: bool = False  # start on any message that matches no trigger (start_on_any_message)
    stub: bool = False  # replace unsupported widgets with states that say so, instead of failing
    subflows: Mapping[str, str] = field(default_factory=dict)  # Studio flow SID (FW…) -> our flow name


@dataclass
class Imported:
    """A converted flow: the document, what was stubbed, what the user should know, and its test."""

    name: str
    flow: dict[str, Any]
    warnings: list[str]
    stubbed: list[Unsupported]
    tests: dict[str, Any] | None
    test_notes: list[str]

    def flow_yaml(self) -> str:
        header = ["Imported from a Twilio Studio export by `python -m bot import-studio` (docs/studio.md)."]
        if self.stubbed:
            header.append("Not supported here, replaced by states that say so:")
            header += [f"  {item}" for item in self.stubbed]
        return dump(self.flow, header)

    def tests_yaml(self) -> str | None:
        if self.tests is None:
            return None
        header = [f"Conversation test for the flow {self.name!r}, generated by `python -m bot import-studio`.",
                  "Run it with: .venv/bin/python -m bot test (edit it freely; a new import overwrites it)."]
        if self.test_notes:
            header.append("What it does not walk:")
            header += [f"- {note}" for note in self.test_notes]
        return dump(self.tests, header)


# -- reading ------------------------------------------------------------------------------------

def read_export(path: Path) -> dict[str, Any]:
    """The export's JSON, or StudioError saying why it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise StudioError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise StudioError(f"{path}: cannot read the file: {error}") from None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise StudioError(f"{path}: not JSON ({error}); export the flow from the Studio console "
                          "(the flow's Trigger widget > Flow Configuration > Export to JSON)") from None
    if isinstance(data, dict) and isinstance(data.get("definition"), dict):  # the REST API's Flow resource
        data = data["definition"]
    if not isinstance(data, dict) or not isinstance(data.get("states"), list):
        raise StudioError(f"{path}: not a Twilio Studio flow export (it has no list of states)")
    return data


def trigger_problem(word: str) -> str | None:
    """Why ``word`` cannot be a trigger, or None."""
    if not normalise(word):
        return f"trigger {word!r} is empty once spaces and punctuation are removed"
    if normalise(word) in COMPLIANCE_WORDS:
        return (f"trigger {word!r} is a compliance keyword (STOP, START, HELP and their kin always opt out, "
                "opt in or answer with the help text); choose another word")
    return None


def flow_name_from(stem: str) -> str:
    """A valid flow name made from a file name: ``daily-sit-down`` -> ``daily_sit_down``."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_").lower()
    if not name or not re.match(r"[A-Za-z_]", name):
        name = "studio_" + name
    return name


def import_flow(export: Mapping[str, Any], options: Options) -> Imported:
    """Convert a Studio export; raises UnsupportedWidgets (unless ``options.stub``) or StudioError."""
    if not NAME_RE.match(options.name):
        raise StudioError(f"{options.name!r} is not a valid flow name (letters, digits and _, "
                          "not starting with a digit)")
    for word in options.triggers:
        problem = trigger_problem(word)
        if problem:
            raise StudioError(problem)
    for sid, target in options.subflows.items():
        if not NAME_RE.match(target):
            raise StudioError(f"--subflow {sid}={target}: {target!r} is not a valid flow name")
    converter = _Converter(export, options)
    document = converter.convert()
    writer = _TestWriter(document, options)
    tests, notes = writer.build()
    return Imported(options.name, document, converter.warnings, converter.stubbed, tests, notes)


# -- converting -----------------------------------------------------------------------------------

class _Refused(Exception):
    """This widget cannot be converted (the reason is shown with its name and type)."""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


class _Text(str):
    """A message text: written in double quotes, or as a block when it has several lines."""


class _Quoted(str):
    """A regular expression: written in single quotes, so backslashes stay as they are."""


class _Converter:
    def __init__(self, export: Mapping[str, Any], options: Options) -> None:
        self.export = export
        self.options = options
        self.warnings: list[str] = []
        self.unsupported: list[Unsupported] = []
        self.stubbed: list[Unsupported] = []
        widgets = export.get("states")
        if not isinstance(widgets, list) or not all(isinstance(w, dict) and isinstance(w.get("name"), str)
                                                      and isinstance(w.get("type"), str) for w in widgets):
            raise StudioError("not a Twilio Studio flow export: every state needs a name and a type")
        names = [w["name"] for w in widgets]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise StudioError(f"two widgets are named {duplicates[0]!r}")
        initial = export.get("initial_state", "Trigger")
        self.trigger = next((w for w in widgets if w["name"] == initial and w["type"] == "trigger"), None) or \
            next((w for w in widgets if w["type"] == "trigger"), None)
        if self.trigger is None:
            raise StudioError("the export has no Trigger widget (initial_state), so nothing starts it")
        self.widgets: list[dict[str, Any]] = [w for w in widgets if w is not self.trigger]
        if not self.widgets:
            raise StudioError("the flow has no widgets besides its Trigger: nothing to import")
        self.by_name = {w["name"]: w for w in self.widgets}
        self.names = self._state_names()
        self.entry = ""  # the Trigger event the flow starts from

    # names

    def _state_names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for widget in self.widgets:
            if STATE_RE.match(widget["name"]) and widget["name"] != END:
                names[widget["name"]] = widget["name"]
        taken = set(names.values())
        for widget in self.widgets:
            original = widget["name"]
            if original in names:
                continue
            base = re.sub(r"[^A-Za-z0-9_-]", "_", original)
            if not re.match(r"[A-Za-z_]", base):
                base = "w_" + base
            if base == END:
                base = "end_widget"
            candidate, count = base, 1
            while candidate in taken:
                count += 1
                candidate = f"{base}_{count}"
            names[original] = candidate
            taken.add(candidate)
            why = ("'end' is the built-in state that ends a conversation" if original == END else
                   "state names use letters, digits, '_' and '-'")
            self._warn(f"widget {original!r} is imported as state {candidate!r}: {why}")
        return names

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    # the whole flow

    def convert(self) -> dict[str, Any]:
        start = self._start()
        states: dict[str, Any] = {}
        for widget in self.widgets:
            states.update(self._states_of(widget))
        if self.unsupported and not self.options.stub:
            raise UnsupportedWidgets(self.unsupported)
        copies = self._data_copies()
        if copies:
            first = states[start]
            first["set"] = {**copies, **first.get("set", {})}
            states[start] = {"set": first.pop("set"), **first}
        document: dict[str, Any] = {"flow": self.options.name}
        description = self.export.get("description")
        if isinstance(description, str) and description.strip():
            document["description"] = description.strip()
        if self.options.triggers:
            document["triggers"] = list(self.options.triggers)
        if self.options.default:
            document["start_on_any_message"] = True
        document["start"] = start
        document["states"] = states
        if not self.options.triggers and not self.options.default and self.entry in (
                "incomingMessage", "incomingConversationMessage"):
            self._warn("no --trigger and no --default: nobody can start this flow by texting "
                       "(a broadcast, or another flow's enter, still can)")
        self._check_templates(document)
        return document

    def _start(self) -> str:
        assert self.trigger is not None
        leads = {t.get("event"): t.get("next") for t in self.trigger.get("transitions") or []
                 if isinstance(t, dict) and t.get("next")}
        entry = next((event for event in ENTRY_EVENTS if leads.get(event)), None)
        if entry is None:
            raise StudioError("the Trigger widget leads nowhere (none of incomingMessage, incomingParent, "
                              "incomingRequest has a next widget): nothing to import")
        self.entry = entry
        if entry != "incomingMessage":
            how = {"incomingParent": "here another flow enters it (enter:) — import the parent with "
                                     f"--subflow FW…={self.options.name}",
                   "incomingRequest": "here a broadcast starts it (python -m bot broadcast --flow "
                                      f"{self.options.name} --to people.csv; the CSV's columns are "
                                      "{{flow.data.COLUMN}})",
                   "incomingConversationMessage": "here it starts on an incoming SMS",
                   "incomingCall": "calls never reach this bot"}[entry]
            self._warn(f"the Trigger's incomingMessage leads nowhere: the flow starts where "
                       f"{ENTRY_WORDS[entry]} starts it, at {leads[entry]!r} ({how})")
        for event, target in leads.items():
            if event != entry and event in ENTRY_WORDS:
                self._warn(f"in Studio, {ENTRY_WORDS[event]} starts this flow at {target!r}; here only "
                           f"{ENTRY_WORDS[entry]} does (at {leads[entry]!r})")
        return self._target(self.trigger, entry, str(leads[entry]))

    def _data_copies(self) -> dict[str, str]:
        """A flow started by the REST API reads its parameters as ``flow.data.NAME``; started by
        a broadcast here, they are the CSV's columns, ``{{ NAME }}``: copy them over at the start."""
        if self.entry != "incomingRequest":
            return {}
        copies: dict[str, str] = {}
        for path in sorted(self._paths_in(self.widgets)):
            parts = path.split(".")
            if parts[:2] == ["flow", "data"] and len(parts) > 2 and NAME_RE.match(parts[2]):
                copies[f"flow.data.{parts[2]}"] = f"{{{{ {parts[2]} | default: '' }}}}"
        return copies

    # widgets

    def _states_of(self, widget: dict[str, Any]) -> dict[str, Any]:
        name = self.names[widget["name"]]
        handlers = {
            "send-message": self._send_message,
            "send-and-wait-for-reply": self._send_and_wait,
            "split-based-on": self._split,
            "set-variables": self._set_variables,
            "make-http-request": self._http_request,
            "run-function": self._run_function,
            "run-function-v2": self._run_function,
            "run-subflow": self._run_subflow,
        }
        handler = handlers.get(widget["type"])
        try:
            if handler is None:
                raise _Refused("")
            return handler(widget, name)
        except _Refused as refused:
            problem = Unsupported(widget["name"], widget["type"], str(refused))
            self.unsupported.append(problem)
            if self.options.stub:
                self.stubbed.append(problem)
            return {name: self._stub(widget)}

    def _stub(self, widget: dict[str, Any]) -> dict[str, Any]:
        transitions = [t for t in widget.get("transitions") or [] if isinstance(t, dict)]
        first = transitions[0] if transitions else {}
        go = self._target(widget, str(first.get("event")), first["next"]) if first.get("next") else END
        return {"say": _Text(f"[Not supported here: Studio widget {widget['name']} ({widget['type']})]"),
                "go": go}

    def _next(self, widget: dict[str, Any], event: str) -> str:
        """Where the widget's ``event`` transition leads: a state name, or end."""
        for transition in widget.get("transitions") or []:
            if isinstance(transition, dict) and transition.get("event") == event and transition.get("next"):
                return self._target(widget, event, transition["next"])
        return END

    def _target(self, widget: dict[str, Any], event: str, target: Any) -> str:
        if not isinstance(target, str) or target not in self.names:
            raise StudioError(f"widget {widget['name']!r}: its {event} transition leads to {target!r}, "
                              "which is not a widget of this flow")
        return self.names[target]

    def _dropped(self, widget: dict[str, Any], event: str, why: str) -> None:
        target = self._next(widget, event)
        if target != END:
            self._warn(f"widget {widget['name']!r}: its {event} branch (to {target!r}) is not imported: {why}")

    @staticmethod
    def _properties(widget: dict[str, Any]) -> dict[str, Any]:
        properties = widget.get("properties")
        return properties if isinstance(properties, dict) else {}

    def _saved_at(self, widget: dict[str, Any], *rest: str) -> str:
        if not STATE_RE.match(widget["name"]):
            raise _Refused(f"its name cannot be read in a template ({{{{widgets.{widget['name']}…}}}}); "
                           "rename the widget in Studio (letters, digits, _ and -)")
        return ".".join(("widgets", widget["name"], *rest))

    def _send_message(self, widget: dict[str, Any], name: str) -> dict[str, Any]:
        properties = self._properties(widget)
        body = _text(properties.get("body"))
        state: dict[str, Any] = {}
        to = _text(properties.get("to")).strip()
        if to and not _is_the_contact(to):
            if not body.strip():
                raise _Refused("it sends an empty message to another number")
            state["notify"] = {"to": to, "say": _Text(body)}
            self._warn(f"widget {widget['name']!r} texts {to} (not the person in the conversation): "
                       "imported as a notify, which needs the outbound settings (docs/studio.md)")
        elif body:
            state["say"] = _Text(body)
        if properties.get("media_url"):
            self._warn(f"widget {widget['name']!r}: its media (media_url) is not sent, only the text")
        state["go"] = self._next(widget, "sent")
        self._dropped(widget, "failed", "a failed delivery is not reported to the flow here")
        return {name: state}

    def _send_and_wait(self, widget: dict[str, Any], name: str) -> dict[str, Any]:
        properties = self._properties(widget)
        body = _text(properties.get("body"))
        state: dict[str, Any] = {}
        if body:
            state["say"] = _Text(body)
        state["replies"] = [{"pattern": _Quoted(WAIT_PATTERN), "save": self._saved_at(widget, "inbound", "Body"),
                             "go": self._next(widget, "incomingMessage")}]
        timeout = properties.get("timeout")
        if timeout not in (None, ""):
            seconds = _seconds(timeout)
            if seconds is None:
                self._warn(f"widget {widget['name']!r}: timeout {timeout!r} is not a number of seconds; "
                           "it is not imported")
            else:
                state["timeout"] = {"after": f"{seconds}s", "go": self._next(widget, "timeout")}
        if properties.get("media_url"):
            self._warn(f"widget {widget['name']!r}: its media (media_url) is not sent, only the text")
        self._dropped(widget, "deliveryFailure", "a failed delivery is not reported to the flow here")
        return {name: state}

    def _split(self, widget: dict[str, Any], name: str) -> dict[str, Any]:
        properties = self._properties(widget)
        value = properties.get("input")
        if not isinstance(value, str):
            raise _Refused("it has no input to test")
        cases: list[dict[str, Any]] = []
        for transition in widget.get("transitions") or []:
            if not isinstance(transition, dict) or transition.get("event") != "match":
                continue
            conditions = transition.get("conditions") or []
            if len(conditions) != 1 or not isinstance(conditions[0], dict):
                raise _Refused(f"a branch with {len(conditions)} conditions (one per branch is supported)")
            condition = conditions[0]
            kind = condition.get("type")
            if kind not in CONDITIONS:
                raise _Refused(f"the condition type {kind!r} is not supported")
            arguments = condition.get("arguments") or []
            if arguments and str(arguments[0]).strip() != value.strip():
                label = condition.get("friendly_name") or kind
                self._warn(f"widget {widget['name']!r}: the condition {label!r} tests {arguments[0]!r}, not the "
                           f"split's input {value!r}; the import tests the input")
            go = self._target(widget, "match", transition["next"]) if transition.get("next") else END
            if kind in BLANK_CONDITIONS:
                cases.append({kind: True, "go": go})
                continue
            argument = _text(condition.get("value"))
            if kind == "regex":
                try:
                    re.compile(argument)
                except re.error as error:
                    raise _Refused(f"the regular expression {argument!r} does not work here: {error}") from None
                cases.append({kind: _Quoted(argument), "go": go})
            else:
                cases.append({kind: argument, "go": go})
        otherwise = self._next(widget, "noMatch")
        if not cases:
            self._warn(f"widget {widget['name']!r} has no conditions: it always goes to {otherwise!r}")
            return {name: {"go": otherwise}}
        return {name: {"branch": {"value": value, "cases": cases, "otherwise": otherwise}}}

    def _set_variables(self, widget: dict[str, Any], name: str) -> dict[str, Any]:
        values: dict[str, str] = {}
        for variable in self._properties(widget).get("variables") or []:
            if not isinstance(variable, dict):
                continue
            key = _text(variable.get("key"))
            if not STATE_RE.match(key):
                raise _Refused(f"the variable name {key!r} cannot be read in a template here "
                               "(letters, digits, _ and -)")
            values[f"flow.variables.{key}"] = _text(variable.get("value"))
        state: dict[str, Any] = {"set": values} if values else {}
        state["go"] = self._next(widget, "next")
        return {name: state}

    def _pairs(self, widget: dict[str, Any]) -> dict[str, str]:
        pairs: dict[str, str] = {}
        for parameter in self._properties(widget).get("parameters") or []:
            if isinstance(parameter, dict) and _text(parameter.get("key")):
                key = _text(parameter.get("key"))
                if key in pairs:
                    self._warn(f"widget {widget['name']!r}: parameter {key!r} is given twice; the last one is sent")
                pairs[key] = _text(parameter.get("value"))
        return pairs

    def _http_request(self, widget: dict[str, Any], name: str) -> dict[str, Any]:
        properties = self._properties(widget)
        method = _text(properties.get("method") or "GET").upper()
        if method not in HTTP_METHODS:
            raise _Refused(f"the method {method} is not supported ({', '.join(HTTP_METHODS)})")
        url = _text(properties.get("url")).strip()
        if not url:
            raise _Refused("it has no URL")
        fetch: dict[str, Any] = {"url": url, "method": method}
        parameters = self._pairs(widget)
        body = _text(properties.get("body"))
        if "json" in _text(properties.get("content_type")).lower():
            if method == "GET":
                if body.strip():
                    self._warn(f"widget {widget['name']!r}: a GET sends no body; its JSON body is not sent")
            elif body.strip():
                fetch["json"] = _Text(body)
            if parameters:
                self._warn(f"widget {widget['name']!r}: with a JSON body, its parameters are not sent")
        else:
            if parameters:
                fetch["params" if method == "GET" else "form"] = parameters
            if body.strip():
                self._warn(f"widget {widget['name']!r}: a form request sends its parameters; its body is not sent")
        if properties.get("add_twilio_auth"):
            self._warn(f"widget {widget['name']!r}: 'Add Twilio auth' is not supported: the request is sent "
                       "without your Twilio credentials")
        fetch.update(save=self._saved_at(widget, "parsed"), timeout=HTTP_TIMEOUT, fallback=_Text(""),
                     on_error=self._next(widget, "failed"))
        return {name: {"fetch": fetch, "go": self._next(widget, "success")}}

    def _run_function(self, widget: dict[str, Any], name: str) -> dict[str, Any]:
        url = _text(self._properties(widget).get("url")).strip()
        if not url:
            raise _Refused("it has no url (export the flow again from the console, or call the Function with a "
                           "make-http-request widget)")
        fetch: dict[str, Any] = {"url": url, "method": "POST"}
        parameters = self._pairs(widget)
        if parameters:
            fetch["form"] = parameters
        fetch.update(save=self._saved_at(widget, "parsed"), timeout=HTTP_TIMEOUT, fallback=_Text(""),
                     on_error=self._next(widget, "fail"))
        return {name: {"fetch": fetch, "go": self._next(widget, "success")}}

    def _run_subflow(self, widget: dict[str, Any], name: str) -> dict[str, Any]:
        properties = self._properties(widget)
        sid = _text(properties.get("flow_sid"))
        target = self.options.subflows.get(sid)
        if target is None:
            raise _Refused(f"its subflow {sid or '(none)'} is not imported: import that flow too, and add "
                           f"--subflow {sid or 'FW…'}=ITS_FLOW_NAME")
        then = self._next(widget, "completed")
        self._dropped(widget, "failed", "the entered flow cannot fail here")
        state: dict[str, Any] = {}
        parameters = self._pairs(widget)
        if parameters:
            for key in parameters:
                if not STATE_RE.match(key):
                    raise _Refused(f"the parameter name {key!r} cannot be read in a template here")
            state["set"] = {f"trigger.parent.parameters.{key}": value for key, value in parameters.items()}
        states: dict[str, Any] = {name: state}
        returned = sorted({path.split(".")[2] for path in self._paths_in(self.widgets)
                           if path.startswith(f"widgets.{widget['name']}.") and len(path.split(".")) > 2})
        if returned:
            back = self._fresh_name(f"{name}-return")
            state["enter"] = {"flow": target, "then": back}
            states[back] = {"set": {self._saved_at(widget, key): f"{{{{flow.variables.{key}}}}}"
                                    for key in returned if STATE_RE.match(key)},
                            "go": then}
            self._warn(f"widget {widget['name']!r}: what the subflow returns ({', '.join(returned)}) is copied "
                       f"from its flow.variables in the added state {back!r}")
        else:
            state["enter"] = {"flow": target, "then": then}
        return states

    def _fresh_name(self, base: str) -> str:
        taken = set(self.names.values())
        candidate, count = base, 1
        while candidate in taken:
            count += 1
            candidate = f"{base}_{count}"
        self.names[f"\0{candidate}"] = candidate  # reserved, not a widget
        return candidate

    # templates

    @staticmethod
    def _paths_in(widgets: Sequence[dict[str, Any]]) -> set[str]:
        """Every variable path the widgets' templates read (``widgets.ask.inbound.Body``)."""
        found: set[str] = set()
        for widget in widgets:
            for text in _strings(widget.get("properties")):
                found |= _variable_paths(text) or set()
        return found

    def _check_templates(self, document: dict[str, Any]) -> None:
        kinds = {widget["name"]: widget["type"] for widget in self.widgets}
        stubbed = {item.widget for item in self.stubbed}
        for text in _strings(document["states"]):
            paths = _variable_paths(text)
            if paths is None:
                self._warn(f"this template does not parse, and lint will say so: {text!r}")
                continue
            for path in sorted(paths):
                problem = self._path_problem(path, kinds, stubbed)
                if problem:
                    self._warn(f"{{{{{path}}}}} {problem}")

    def _path_problem(self, path: str, kinds: dict[str, str], stubbed: set[str]) -> str | None:
        parts = path.split(".")
        root = parts[0]
        if path in TEMPLATE_NAMES or root not in ("trigger", "contact", "flow", "widgets"):
            return None
        if parts[:2] == ["flow", "variables"]:
            return None
        if parts[:2] == ["flow", "data"]:
            return None if self.entry == "incomingRequest" else \
                "is empty here: flow.data holds the parameters of a REST API execution"
        if parts[:3] == ["trigger", "parent", "parameters"]:
            return None if self.entry == "incomingParent" else "is empty unless another flow enters this one"
        if root != "widgets":
            return f"is not filled in here (only {', '.join(TEMPLATE_NAMES)}, flow.variables and widgets are)"
        if len(parts) < 2:
            return None
        widget = parts[1]
        kind = kinds.get(widget)
        if kind is None:
            return f"reads a widget {widget!r} that is not in this flow"
        if widget in stubbed:
            return f"reads the widget {widget!r}, which is not supported here: it is empty"
        rest = parts[2:]
        if kind == "send-and-wait-for-reply" and rest[:2] != ["inbound", "Body"]:
            return f"is empty here: only widgets.{widget}.inbound.Body is kept of a reply"
        if kind in ("make-http-request", "run-function", "run-function-v2") and rest[:1] != ["parsed"]:
            return f"is empty here: only widgets.{widget}.parsed (the JSON answer) is kept of a request"
        if kind not in ("send-and-wait-for-reply", "make-http-request", "run-function", "run-function-v2",
                        "run-subflow"):
            return f"is empty here: nothing is kept of a {kind} widget"
        return None


def _is_the_contact(to: str) -> bool:
    return re.fullmatch(r"\{\{\s*(contact\.channel\.address|trigger\.message\.From)\s*\}\}", to) is not None


def _seconds(value: Any) -> int | None:
    try:
        seconds = float(str(value).strip())
    except ValueError:
        return None
    return int(seconds) if seconds > 0 and seconds == int(seconds) else None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


_LIQUID = Environment(undefined=StrictDefaultUndefined)
_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)


def _variable_paths(text: str) -> set[str] | None:
    """The variable paths a template reads; None when it does not parse."""
    if "{" not in text:
        return set()
    try:
        return set(_LIQUID.from_string(text).variable_paths())
    except LiquidError:
        return None


# -- writing YAML -------------------------------------------------------------------------------

class _Dumper(yaml.SafeDumper):
    """Lists indented under their key, no anchors, texts quoted as the docs recommend."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def choose_scalar_style(self) -> str:
        """Quote with double quotes what holds a single quote (``{{ x | default: '' }}``)."""
        style: str = super().choose_scalar_style()
        event = self.event
        if style == "'" and isinstance(event, yaml.ScalarEvent) and event.style != "'" and "'" in event.value:
            return '"'
        return style


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else "'" if '"' in value and "'" not in value else '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style=style)


def _represent_quoted(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style="'")


_Dumper.add_representer(_Text, _represent_text)
_Dumper.add_representer(_Quoted, _represent_quoted)


def dump(document: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """The document as YAML (stable: the same document gives the same bytes), checked to read
    back as the same data with the bot's own YAML reader."""
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100,
                     default_flow_style=False)
    data, _ = read_yaml(body)
    if data != document:  # a value YAML would misread: a bug here, never a surprise in the flow
        raise AssertionError(f"YAML output does not read back as written:\n{body}")
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header)
    return comments + body


# -- the generated conversation test --------------------------------------------------------------

@dataclass
class _Free:
    """An input the test may still choose: the reply of turn ``turn``, or a broadcast variable."""

    turn: int
    variable: str | None = None


@dataclass
class _Walk:
    turns: list[dict[str, Any]]  # {"send"|"start", "vars", "says": [template…]}
    context: dict[str, Any]  # what templates see, as far as the test knows it
    free: dict[str, _Free] = field(default_factory=dict)  # template path -> the input it comes from
    stubs: dict[str, Any] = field(default_factory=dict)  # fetch URL -> {} (success) or "fail"
    stubbed_in: dict[str, int] = field(default_factory=dict)  # fetch URL -> the turn that first needs it
    decisions: list[tuple[int, str]] = field(default_factory=list)  # (turn, the way the walk took)

    def decide(self, label: str) -> None:
        self.decisions.append((len(self.turns) - 1, label))

    def copy(self) -> _Walk:
        return copy.deepcopy(self)


class _TestWriter:
    """Walk the converted flow as the engine would, choosing replies that take each way out."""

    def __init__(self, document: dict[str, Any], options: Options) -> None:
        self.document = document
        self.states: dict[str, Any] = document["states"]
        self.options = options
        self.triggers = {normalise(word) for word in options.triggers}
        self.walked: set[str] = set()  # waiting states already walked from
        self.finished: list[_Walk] = []
        self.notes: list[str] = []

    def build(self) -> tuple[dict[str, Any] | None, list[str]]:
        if self.options.triggers or self.options.default:
            first = self.options.triggers[0] if self.options.triggers else "hello"
            turn: dict[str, Any] = {"send": first, "says": []}
            channel = {"Body": first, "From": TEST_SENDER, "To": TEST_BOT_NUMBER}
        else:
            turn = {"start": self.options.name, "vars": {}, "says": []}
            channel = {"Body": "", "From": TEST_SENDER, "To": ""}
        context = {"trigger": {"message": channel}, "contact": {"channel": {"address": TEST_SENDER}},
                   "flow": {"channel": {"address": channel["To"]}, "variables": {}}, "sender": TEST_SENDER}
        self._enter(_Walk([turn], context), self.document["start"], 0)
        tests: list[dict[str, Any]] = []
        seen: set[str] = set()
        for walk in self.finished:
            test = self._test(walk)
            key = json.dumps(test["turns"], sort_keys=True) + json.dumps(test.get("fetch"), sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            names = {existing["name"] for existing in tests}
            while test["name"] in names:
                test["name"] += " (again)"
            tests.append(test)
        tests = [test for test in tests if not any(_covers(other, test) for other in tests if other is not test)]
        return ({"tests": tests} if tests else None), self.notes

    def _note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    # walking

    def _enter(self, walk: _Walk, name: str, steps: int) -> None:
        if len(self.finished) >= MAX_TESTS:
            self._note(f"The flow has more ways through it than {MAX_TESTS} tests; the rest are not walked.")
            return
        if steps >= MAX_STEPS:
            self._finish(walk, f"A turn that moves through more than {MAX_STEPS} states (the engine ends the "
                               "conversation there) is not walked.", drop_last=True)
            return
        if name == END and END not in self.states:
            self._finish(walk)
            return
        state = self.states[name]
        for key, source in (state.get("set") or {}).items():
            if key.startswith("flow.data.") and "start" in walk.turns[0] and len(walk.turns) == 1 and \
                    key not in walk.free and source == f"{{{{ {key[len('flow.data.'):]} | default: '' }}}}":
                walk.free[key] = _Free(0, key[len("flow.data."):])
                continue
            value = self._render(walk, source)
            if value is not None:
                store_at(walk.context, key, value.strip())
            else:
                _forget(walk.context, key)
        fetch = state.get("fetch")
        if fetch is None:
            self._after_fetch(walk, name, state, steps)
            return
        url = fetch["url"]
        if _variable_paths(url) != set() or not url.startswith(("http://", "https://")):
            self._finish(walk, f"The walk stops before {name!r}: it calls {url}, an address the test cannot "
                               "stub (made from a template, or the bot's own).", drop_last=True)
            return
        answers: list[Any] = [walk.stubs[url]] if url in walk.stubs else [{}, "fail"]
        for answer in answers:
            branch = walk.copy() if answer is not answers[-1] else walk
            branch.stubs[url] = answer
            branch.stubbed_in.setdefault(url, len(branch.turns) - 1)
            if answer == "fail":
                if len(answers) > 1:
                    branch.decide(f"{name} fails")
                branch.turns[-1]["says"].append(fetch.get("fallback", ""))
                self._enter(branch, fetch.get("on_error") or END, steps + 1)
            else:
                if len(answers) > 1:
                    branch.decide(f"{name} succeeds")
                store_at(branch.context, fetch["save"], {})
                self._after_fetch(branch, name, state, steps)

    def _after_fetch(self, walk: _Walk, name: str, state: dict[str, Any], steps: int) -> None:
        says = state.get("say") or []
        walk.turns[-1]["says"].extend([says] if isinstance(says, str) else says)
        if state.get("replies"):
            self._wait(walk, name, state)
        elif state.get("branch"):
            self._branch(walk, name, state["branch"], steps)
        elif state.get("enter"):
            self._finish(walk, f"The walk stops before {name!r}: it enters the flow {state['enter']['flow']!r} "
                               "(test that flow on its own).", drop_last=True)
        elif state.get("go"):
            self._enter(walk, state["go"], steps + 1)
        else:
            self._finish(walk)

    def _wait(self, walk: _Walk, name: str, state: dict[str, Any]) -> None:
        self._settle(walk)
        if state.get("timeout"):
            self._note(f"The timeout branch of {name!r} (no reply within {state['timeout']['after']}) is not "
                       "walked: it needs time to pass.")
        replies = state["replies"]
        if name in self.walked or len(walk.turns) >= MAX_TURNS:
            self._finish(walk)
            return
        self.walked.add(name)
        if len(replies) != 1 or replies[0].get("pattern") != WAIT_PATTERN or not replies[0].get("go"):
            self._finish(walk, f"The replies of {name!r} are not walked: only Studio's wait for any reply is.")
            return
        reply = replies[0]
        walk.turns.append({"send": None, "says": []})
        walk.free[reply["save"]] = _Free(len(walk.turns) - 1)
        self._enter(walk, reply["go"], 0)

    def _branch(self, walk: _Walk, name: str, branch: dict[str, Any], steps: int) -> None:
        key = _bare_reference(branch["value"])
        cases: list[dict[str, Any]] = branch["cases"]
        if key is not None and key in walk.free:
            self._choose_ways(walk, name, key, branch, steps)
            return
        value = self._render(walk, branch["value"])
        if value is None:
            self._finish(walk, f"The walk stops before {name!r}: it tests {branch['value']}, which the test "
                               "cannot know.", drop_last=True)
            return
        for case in cases:
            condition = _condition_of(case)
            argument = self._argument(walk, case, condition)
            if argument is None:
                self._finish(walk, f"The walk stops before {name!r}: it compares with {case[condition]}, which "
                                   "the test cannot know.", drop_last=True)
                return
            if _holds(condition, value, argument):
                self._enter(walk, case["go"], steps + 1)
                return
        self._enter(walk, branch["otherwise"], steps + 1)

    def _argument(self, walk: _Walk, case: dict[str, Any], condition: str) -> str | None:
        if condition in BLANK_CONDITIONS:
            return ""
        if condition == "regex":
            return str(case[condition])
        return self._render(walk, str(case[condition]))

    def _choose_ways(self, walk: _Walk, name: str, key: str, branch: dict[str, Any], steps: int) -> None:
        """Fork the walk once per way out of the branch, with an input chosen to take it."""
        free = walk.free[key]
        cases: list[dict[str, Any]] = branch["cases"]
        tests: list[tuple[str, str]] = []
        for case in cases:
            condition = _condition_of(case)
            argument = self._argument(walk, case, condition)
            if argument is None:
                self._note(f"The ways out of {name!r} from the case {case[condition]} on are not walked: it "
                           "compares with a value the test cannot know.")
                break
            tests.append((condition, argument))
        ways = [(index, case["go"]) for index, case in enumerate(cases[:len(tests)])]
        if len(tests) == len(cases):
            ways.append((len(tests), branch["otherwise"]))
        forks: list[tuple[_Walk, str]] = []
        for index, go in ways:
            label = "otherwise" if index == len(cases) else f"{tests[index][0]} {tests[index][1]}".rstrip()
            text = self._input_for(tests, index, free.variable is None)
            if text is None:
                self._note(f"The way out of {name!r} for {label} is not walked: no reply found that takes it.")
                continue
            fork = walk.copy()
            self._choose(fork, key, text)
            fork.decide(f"{name}: {label}")
            forks.append((fork, go))
        for fork, go in forks:
            self._enter(fork, go, steps + 1)

    def _input_for(self, tests: list[tuple[str, str]], index: int, is_reply: bool) -> str | None:
        """A text for which test ``index`` is the first to hold (``len(tests)``: none holds)."""
        candidates: list[str] = []
        if index < len(tests):
            candidates += _candidates(*tests[index])
        else:  # none may hold: what makes the negative conditions fail is what makes the others hold
            for condition, argument in tests:
                candidates += _candidates(_OPPOSITE.get(condition, condition), argument)
        candidates += ["something else", "maybe later", "42", "0", "-1", "1000000", "x", ""]
        for text in candidates:
            if is_reply and (trim(text) != text or normalise(text) in COMPLIANCE_WORDS
                             or normalise(text) in self.triggers):
                continue
            first = next((i for i, (condition, argument) in enumerate(tests)
                          if _holds(condition, text, argument)), len(tests))
            if first == index:
                return text
        return None

    def _choose(self, walk: _Walk, key: str, text: str) -> None:
        free = walk.free.pop(key)
        if free.variable is None:
            walk.turns[free.turn]["send"] = text
            store_at(walk.context, key, trim(text))
        else:
            if text:
                walk.turns[free.turn]["vars"][free.variable] = text
            store_at(walk.context, key, text)

    def _settle(self, walk: _Walk) -> None:
        """Inputs nothing tested get a plain value: replies 'answer N', broadcast variables none."""
        for key, free in list(walk.free.items()):
            if free.variable is None:
                self._choose(walk, key, f"answer {free.turn}")

    def _render(self, walk: _Walk, source: str) -> str | None:
        """The template's value, as far as the test knows it (None: it does not)."""
        paths = _variable_paths(source)
        if paths is None or any(path.split(".")[0] in ("env", "message") for path in paths):
            return None
        for path in paths:
            for key in list(walk.free):
                if path == key or path.startswith(key + ".") or key.startswith(path + "."):
                    free = walk.free[key]
                    self._choose(walk, key, f"answer {free.turn}" if free.variable is None else "")
        try:
            return _LIQUID.from_string(source).render(**walk.context)
        except LiquidError:
            return None

    def _finish(self, walk: _Walk, note: str | None = None, drop_last: bool = False) -> None:
        if note:
            self._note(note)
        self._settle(walk)
        if drop_last:
            walk.turns.pop()
            walk.decisions = [(turn, label) for turn, label in walk.decisions if turn < len(walk.turns)]
            walk.stubs = {url: answer for url, answer in walk.stubs.items() if walk.stubbed_in[url] < len(walk.turns)}
        if walk.turns:
            self.finished.append(walk)

    # writing

    def _test(self, walk: _Walk) -> dict[str, Any]:
        first = walk.turns[0]
        opening = first["send"] if "send" in first else "broadcast start"
        test: dict[str, Any] = {"name": " -> ".join([opening, *(label for _, label in walk.decisions)])}
        if walk.stubs:
            test["fetch"] = {url: ({} if answer != "fail" else "fail") for url, answer in walk.stubs.items()}
        test["turns"] = [self._turn(turn) for turn in walk.turns]
        return test

    @staticmethod
    def _turn(turn: dict[str, Any]) -> dict[str, Any]:
        written: dict[str, Any] = {}
        if "start" in turn:
            written["start"] = turn["start"]
            if turn["vars"]:
                written["vars"] = dict(sorted(turn["vars"].items()))
        else:
            written["send"] = turn["send"]
        says: list[str] = turn["says"]
        if all(_variable_paths(text) == set() and "{%" not in text for text in says):
            texts = [_Text(text.strip()) for text in says if text.strip()][:MAX_REPLIES]
            written["expect"] = texts[0] if len(texts) == 1 else texts
            return written
        fragments: list[str] = []
        for text in says[:MAX_REPLIES]:
            if "{%" in text:
                continue
            for piece in _TAG.split(text):
                piece = _strip_ends(piece)
                if len(re.sub(r"\W", "", piece)) >= 4 and _Text(piece) not in fragments:
                    fragments.append(_Text(piece))
        if fragments:
            written["expect_contains"] = fragments[0] if len(fragments) == 1 else fragments
        return written


def _covers(longer: dict[str, Any], shorter: dict[str, Any]) -> bool:
    """``longer`` runs every turn of ``shorter`` first, with the same stubbed answers."""
    turns, fetch = shorter["turns"], shorter.get("fetch", {})
    return len(longer["turns"]) > len(turns) and longer["turns"][:len(turns)] == turns and \
        all(longer.get("fetch", {}).get(url) == answer for url, answer in fetch.items())


def _strip_ends(piece: str) -> str:
    """A literal piece of a text without the spaces and punctuation around it."""
    return re.sub(r"^[\s.,;:!?-]+|[\s.,;:!?-]+$", "", piece)


def _bare_reference(source: str) -> str | None:
    found = re.fullmatch(r"\s*\{\{-?\s*([A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*)\s*-?\}\}\s*", source)
    return found.group(1) if found else None


def _condition_of(case: Mapping[str, Any]) -> str:
    return next(key for key in case if key in CONDITIONS)


def _candidates(condition: str, argument: str) -> list[str]:
    """Texts likely to make ``condition`` hold."""
    if condition in ("equal_to", "contains", "starts_with"):
        return [argument.strip(), argument]
    if condition == "matches_any_of":
        return [item.strip() for item in argument.split(",") if item.strip()]
    if condition == "regex":
        example = _regex_example(argument)
        return [example] if example is not None else []
    if condition == "is_blank":
        return [""]
    if condition in ("less_than", "greater_than"):
        number = parse_number(argument)
        if number is None:
            return []
        moved = number - 1 if condition == "less_than" else number + 1
        return [_number_text(moved)]
    return []


def _number_text(number: Decimal) -> str:
    return str(int(number)) if number == number.to_integral_value() else format(number.normalize(), "f")


def _holds(condition: str, value: str, argument: str) -> bool:
    """Studio's split conditions, as the engine evaluates them (case-insensitive, comma lists)."""
    folded, against = value.casefold(), argument.casefold()
    listed = {item.strip().casefold() for item in argument.split(",")}
    if condition == "equal_to":
        return folded.strip() == against.strip()
    if condition == "not_equal_to":
        return folded.strip() != against.strip()
    if condition == "matches_any_of":
        return folded.strip() in listed
    if condition == "does_not_match_any_of":
        return folded.strip() not in listed
    if condition == "contains":
        return against in folded
    if condition == "does_not_contain":
        return against not in folded
    if condition == "starts_with":
        return folded.startswith(against)
    if condition == "does_not_start_with":
        return not folded.startswith(against)
    if condition == "regex":
        return re.search(argument, value, re.IGNORECASE) is not None
    if condition == "is_blank":
        return not value.strip()
    if condition == "is_not_blank":
        return bool(value.strip())
    left, right = parse_number(value), parse_number(argument)
    if left is None or right is None:
        return False
    return left < right if condition == "less_than" else left > right


def _regex_example(pattern: str) -> str | None:
    """A short text the regular expression finds (``^\\d{3}$`` -> "000"), or None."""
    try:
        from re import _parser  # type: ignore[attr-defined]
        tree = _parser.parse(pattern, re.IGNORECASE)
    except (ImportError, re.error):
        return None
    try:
        text = _example(list(tree))
    except (ValueError, TypeError, IndexError, RecursionError):
        return None
    return text if re.search(pattern, text, re.IGNORECASE) else None


def _example(items: list[Any]) -> str:
    out = []
    for op, argument in items:
        kind = str(op)
        if kind == "LITERAL":
            out.append(chr(argument))
        elif kind == "NOT_LITERAL":
            out.append("a" if chr(argument).lower() != "a" else "b")
        elif kind == "ANY":
            out.append("a")
        elif kind == "IN":
            out.append(_example_in(argument))
        elif kind in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, _, sub = argument
            out.append(_example(list(sub)) * low)
        elif kind == "SUBPATTERN":
            out.append(_example(list(argument[-1])))
        elif kind == "ATOMIC_GROUP":
            out.append(_example(list(argument)))
        elif kind == "BRANCH":
            out.append(_example(list(argument[1][0])))
        elif kind in ("AT", "ASSERT", "ASSERT_NOT", "GROUPREF", "GROUPREF_EXISTS"):
            continue
        else:
            raise ValueError(kind)
    return "".join(out)


def _example_in(items: list[Any]) -> str:
    negate = any(str(op) == "NEGATE" for op, _ in items)
    for op, argument in items:
        kind = str(op)
        if negate:
            break
        if kind == "LITERAL":
            return chr(argument)
        if kind == "RANGE":
            return chr(argument[0])
        if kind == "CATEGORY":
            return {"CATEGORY_DIGIT": "1", "CATEGORY_SPACE": " ", "CATEGORY_WORD": "a"}.get(str(argument), "a")
    if negate:
        excluded = {chr(argument) for op, argument in items if str(op) == "LITERAL"}
        return next(char for char in "aZ1-" if char not in excluded)
    raise ValueError("empty set")


def _forget(variables: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    for part in parents:
        child = variables.get(part)
        if not isinstance(child, dict):
            return
        variables = child
    variables.pop(last, None)
