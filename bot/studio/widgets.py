"""How each kind of Studio widget becomes states of our flow (send-message, split-based-on, …)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, get_args

from bot.flows.compile import unique_label
from bot.flows.json_body import json_document
from bot.flows.schema import END, STATE_PATTERN, Fetch
from bot.studio.errors import StudioError
from bot.studio.liquid import paths_in
from bot.studio.yaml_writer import Quoted, Text
from bot.text.matching import CONDITION_NAMES

STATE_RE = re.compile(STATE_PATTERN)  # state names; also each part of a dotted path after the first
WAIT_PATTERN = "(?s).*"  # a send-and-wait-for-reply takes any reply
HTTP_TIMEOUT = "10s"  # well within MAX_FETCH_TIMEOUT: the whole webhook must answer Twilio within 15 s
HTTP_METHODS: tuple[str, ...] = get_args(Fetch.model_fields["method"].annotation)
BLANK_CONDITIONS = ("is_blank", "is_not_blank")  # the conditions that take no argument
_PLACEHOLDER = re.compile(r"\{\{.*?\}\}", re.DOTALL)
#: A JSON string (its placeholders whole, whatever quotes they hold), or a placeholder outside one.
_JSON_TOKEN = re.compile(r'"(?:\{\{.*?\}\}|[^"\\]|\\.)*"|\{\{.*?\}\}', re.DOTALL)
_UNESCAPED_QUOTE = re.compile(r'(?<!\\)"')
#: How a taken state name is numbered (``ask-return_2``): unique_label's "label (2)" is no state name.
NUMBERED = "{label}_{count}"


class Refused(Exception):
    """This widget cannot be converted (the reason is shown with its name and type)."""


class Widgets:
    """Converts one widget at a time, knowing the flow's widgets and the state name each one got."""

    def __init__(self, widgets: list[dict[str, Any]], names: dict[str, str], subflows: Mapping[str, str],
                 warn: Callable[[str], None]) -> None:
        self.widgets = widgets
        self.names = names  # widget name -> state name
        self.used = set(names.values())  # state names taken, by widgets and by states added for them
        self.subflows = subflows  # Studio flow SID (FW…) -> our flow name
        self.warn = warn

    def states(self, widget: dict[str, Any]) -> dict[str, Any]:
        """The states the widget becomes (its own, under its state name, and any added for it);
        raises Refused when it cannot run here."""
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
        if handler is None:
            raise Refused("")
        return handler(widget, self.names[widget["name"]])

    def stub(self, widget: dict[str, Any]) -> dict[str, Any]:
        """A state that says the widget is not supported, then goes where its first transition does."""
        transitions = [t for t in widget.get("transitions") or [] if isinstance(t, dict)]
        first = transitions[0] if transitions else {}
        go = self.target(widget, str(first.get("event")), first["next"]) if first.get("next") else END
        return {"say": Text(f"[Not supported here: Studio widget {widget['name']} ({widget['type']})]"), "go": go}

    def next(self, widget: dict[str, Any], event: str) -> str:
        """Where the widget's ``event`` transition leads: a state name, or end."""
        for transition in widget.get("transitions") or []:
            if isinstance(transition, dict) and transition.get("event") == event and transition.get("next"):
                return self.target(widget, event, transition["next"])
        return END

    def target(self, widget: dict[str, Any], event: str, target: Any) -> str:
        if not isinstance(target, str) or target not in self.names:
            raise StudioError(f"widget {widget['name']!r}: its {event} transition leads to {target!r}, "
                              "which is not a widget of this flow")
        return self.names[target]

    def _dropped(self, widget: dict[str, Any], event: str, why: str) -> None:
        target = self.next(widget, event)
        if target != END:
            self.warn(f"widget {widget['name']!r}: its {event} branch (to {target!r}) is not imported: {why}")

    def _saved_at(self, widget: dict[str, Any], *rest: str) -> str:
        if not STATE_RE.match(widget["name"]):
            raise Refused(f"its name cannot be read in a template ({{{{widgets.{widget['name']}…}}}}); "
                          "rename the widget in Studio (letters, digits, _ and -)")
        return ".".join(("widgets", widget["name"], *rest))

    def _media(self, widget: dict[str, Any]) -> list[Text]:
        """The widget's picture (Studio's Media URL, a template like its body) as a ``media:`` list;
        empty when it has none, or (with a warning) when it is no web address Twilio could fetch."""
        url = _text(_properties(widget).get("media_url")).strip()
        if not url:
            return []
        if "{{" not in url and "{%" not in url and not url.lower().startswith(("https://", "http://")):
            self.warn(f"widget {widget['name']!r}: its media URL {url!r} is not a web address (https://…), "
                      "so its picture is not imported; only the text is sent")
            return []
        return [Text(url)]

    def _send_message(self, widget: dict[str, Any], name: str) -> dict[str, Any]:
        properties = _properties(widget)
        body = _text(properties.get("body"))
        state: dict[str, Any] = {}
        to = _text(properties.get("to")).strip()
        if to and not _is_the_contact(to):
            if not body.strip():
                raise Refused("it sends an empty message to another number")
            state["notify"] = {"to": to, "say": Text(body)}
            if media := self._media(widget):
                state["notify"]["media"] = media
            self.warn(f"widget {widget['name']!r} texts {to} (not the person in the conversation): "
                      "imported as a notify, which needs the outbound settings (docs/studio.md)")
        else:
            if body:
                state["say"] = Text(body)
            if media := self._media(widget):
                state["media"] = media  # with the text, or a picture alone
        state["go"] = self.next(widget, "sent")
        self._dropped(widget, "failed", "a failed delivery is not reported to the flow here")
        return {name: state}

    def _send_and_wait(self, widget: dict[str, Any], name: str) -> dict[str, Any]:
        properties = _properties(widget)
        body = _text(properties.get("body"))
        state: dict[str, Any] = {"say": Text(body)} if body else {}
        if media := self._media(widget):
            state["media"] = media
        state["replies"] = [{"pattern": Quoted(WAIT_PATTERN), "save": self._saved_at(widget, "inbound", "Body"),
                             "go": self.next(widget, "incomingMessage")}]
        timeout = properties.get("timeout")
        if timeout not in (None, ""):
            seconds = _seconds(timeout)
            if seconds is None:
                self.warn(f"widget {widget['name']!r}: timeout {timeout!r} is not a number of seconds; "
                          "it is not imported")
            else:
                state["timeout"] = {"after": f"{seconds}s", "go": self.next(widget, "timeout")}
        self._dropped(widget, "deliveryFailure", "a failed delivery is not reported to the flow here")
        return {name: state}

    def _split(self, widget: dict[str, Any], name: str) -> dict[str, Any]:
        value = _properties(widget).get("input")
        if not isinstance(value, str):
            raise Refused("it has no input to test")
        cases: list[dict[str, Any]] = []
        for transition in widget.get("transitions") or []:
            if not isinstance(transition, dict) or transition.get("event") != "match":
                continue
            conditions = transition.get("conditions") or []
            if len(conditions) != 1 or not isinstance(conditions[0], dict):
                raise Refused(f"a branch with {len(conditions)} conditions (one per branch is supported)")
            condition = conditions[0]
            kind = condition.get("type")
            if kind not in CONDITION_NAMES:
                raise Refused(f"the condition type {kind!r} is not supported")
            arguments = condition.get("arguments") or []
            if arguments and str(arguments[0]).strip() != value.strip():
                label = condition.get("friendly_name") or kind
                self.warn(f"widget {widget['name']!r}: the condition {label!r} tests {arguments[0]!r}, not the "
                          f"split's input {value!r}; the import tests the input")
            go = self.target(widget, "match", transition["next"]) if transition.get("next") else END
            cases.append({kind: self._case_argument(kind, _text(condition.get("value"))), "go": go})
        otherwise = self.next(widget, "noMatch")
        if not cases:
            self.warn(f"widget {widget['name']!r} has no conditions: it always goes to {otherwise!r}")
            return {name: {"go": otherwise}}
        return {name: {"branch": {"value": value, "cases": cases, "otherwise": otherwise}}}

    @staticmethod
    def _case_argument(kind: str, argument: str) -> Any:
        """What a ``branch`` case says after its condition's name."""
        if kind in BLANK_CONDITIONS:
            return True
        if kind != "regex":
            return argument
        try:
            re.compile(argument)
        except re.error as error:
            raise Refused(f"the regular expression {argument!r} does not work here: {error}") from None
        return Quoted(argument)

    def _set_variables(self, widget: dict[str, Any], name: str) -> dict[str, Any]:
        values: dict[str, str] = {}
        for variable in _properties(widget).get("variables") or []:
            if not isinstance(variable, dict):
                continue
            key = _text(variable.get("key"))
            if not STATE_RE.match(key):
                raise Refused(f"the variable name {key!r} cannot be read in a template here "
                              "(letters, digits, _ and -)")
            values[f"flow.variables.{key}"] = _text(variable.get("value"))
        state: dict[str, Any] = {"set": values} if values else {}
        state["go"] = self.next(widget, "next")
        return {name: state}

    def _pairs(self, widget: dict[str, Any]) -> dict[str, str]:
        pairs: dict[str, str] = {}
        for parameter in _properties(widget).get("parameters") or []:
            if isinstance(parameter, dict) and _text(parameter.get("key")):
                key = _text(parameter.get("key"))
                if key in pairs:
                    self.warn(f"widget {widget['name']!r}: parameter {key!r} is given twice; the last one is sent")
                pairs[key] = _text(parameter.get("value"))
        return pairs

    def _http_request(self, widget: dict[str, Any], name: str) -> dict[str, Any]:
        properties = _properties(widget)
        method = _text(properties.get("method") or "GET").upper()
        if method not in HTTP_METHODS:
            raise Refused(f"the method {method} is not supported ({', '.join(HTTP_METHODS)})")
        url = _text(properties.get("url")).strip()
        if not url:
            raise Refused("it has no URL")
        fetch: dict[str, Any] = {"url": url, "method": method}
        parameters = self._pairs(widget)
        body = _text(properties.get("body"))
        if "json" in _text(properties.get("content_type")).lower():
            if method == "GET":
                if body.strip():
                    self.warn(f"widget {widget['name']!r}: a GET sends no body; its JSON body is not sent")
            elif body.strip():
                fetch["json"] = Text(self._json_body(widget, body))
            if parameters:
                self.warn(f"widget {widget['name']!r}: with a JSON body, its parameters are not sent")
        else:
            if parameters:
                fetch["params" if method == "GET" else "form"] = parameters
            if body.strip():
                self.warn(f"widget {widget['name']!r}: a form request sends its parameters; its body is not sent")
        if properties.get("add_twilio_auth"):
            self.warn(f"widget {widget['name']!r}: 'Add Twilio auth' is not supported: the request is sent "
                      "without your Twilio credentials")
        return self._lookup(widget, name, fetch, failed="failed")

    def _json_body(self, widget: dict[str, Any], body: str) -> str:
        """Studio's JSON body as our ``json:`` text, where each string value is filled in on its own.

        Studio fills its placeholders into the text and then sends it, so a ``{{ … }}`` outside
        quotes (``"age": {{flow.variables.age}}``), or a quote in what people texted, becomes
        structure. Here such a placeholder is put in quotes (one string value) with a warning; a
        ``{% … %}`` tag outside the strings cannot be kept, and refuses the widget.
        """
        bare: list[str] = []

        def token(match: re.Match[str]) -> str:
            text = match.group(0)
            if text.startswith('"'):  # a string: quotes inside its placeholders are Liquid's, not JSON's
                return _PLACEHOLDER.sub(lambda inner: _UNESCAPED_QUOTE.sub('\\\\"', inner.group(0)), text)
            bare.append(text)
            return json.dumps(text, ensure_ascii=False)

        quoted = _JSON_TOKEN.sub(token, body)
        try:
            json_document(quoted)
        except ValueError as error:
            raise Refused(f"its JSON body cannot be sent as one value per placeholder: {error}") from None
        if bare:
            self.warn(f"widget {widget['name']!r}: {', '.join(bare)} in its JSON body is outside quotes; it is "
                      "sent as a string value, so what people text can never add fields")
        return quoted

    def _run_function(self, widget: dict[str, Any], name: str) -> dict[str, Any]:
        url = _text(_properties(widget).get("url")).strip()
        if not url:
            raise Refused("it has no url (export the flow again from the console, or call the Function with a "
                          "make-http-request widget)")
        fetch: dict[str, Any] = {"url": url, "method": "POST"}
        parameters = self._pairs(widget)
        if parameters:
            fetch["form"] = parameters
        return self._lookup(widget, name, fetch, failed="fail")

    def _lookup(self, widget: dict[str, Any], name: str, fetch: dict[str, Any], failed: str) -> dict[str, Any]:
        """The state of a widget that calls a web service: Studio keeps the JSON answer as
        ``widgets.NAME.parsed``, and a failure says nothing (the ``failed`` transition decides)."""
        fetch.update(save=self._saved_at(widget, "parsed"), timeout=HTTP_TIMEOUT, fallback=Text(""),
                     on_error=self.next(widget, failed))
        return {name: {"fetch": fetch, "go": self.next(widget, "success")}}

    def _run_subflow(self, widget: dict[str, Any], name: str) -> dict[str, Any]:
        sid = _text(_properties(widget).get("flow_sid"))
        target = self.subflows.get(sid)
        if target is None:
            raise Refused(f"its subflow {sid or '(none)'} is not imported: import that flow too, and add "
                          f"--subflow {sid or 'FW…'}=ITS_FLOW_NAME")
        then = self.next(widget, "completed")
        self._dropped(widget, "failed", "the entered flow cannot fail here")
        state: dict[str, Any] = {}
        parameters = self._pairs(widget)
        if parameters:
            for key in parameters:
                if not STATE_RE.match(key):
                    raise Refused(f"the parameter name {key!r} cannot be read in a template here")
            state["set"] = {f"trigger.parent.parameters.{key}": value for key, value in parameters.items()}
        states: dict[str, Any] = {name: state}
        # Studio reads what a subflow returns as widgets.NAME.KEY; here the entered flow leaves it in
        # flow.variables, so an added state copies over what this flow reads.
        returned = sorted({path.split(".")[2] for path in paths_in(self.widgets)
                           if path.startswith(f"widgets.{widget['name']}.") and len(path.split(".")) > 2})
        if returned:
            back = unique_label(f"{name}-return", self.used, NUMBERED)
            state["enter"] = {"flow": target, "then": back}
            states[back] = {"set": {self._saved_at(widget, key): f"{{{{flow.variables.{key}}}}}"
                                    for key in returned if STATE_RE.match(key)},
                            "go": then}
            self.warn(f"widget {widget['name']!r}: what the subflow returns ({', '.join(returned)}) is copied "
                      f"from its flow.variables in the added state {back!r}")
        else:
            state["enter"] = {"flow": target, "then": then}
        return states


def _properties(widget: dict[str, Any]) -> dict[str, Any]:
    properties = widget.get("properties")
    return properties if isinstance(properties, dict) else {}


def _text(value: Any) -> str:
    """A property as Studio shows it: JSON for structures, lower-case booleans, "" for none."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _is_the_contact(to: str) -> bool:
    return re.fullmatch(r"\{\{\s*(contact\.channel\.address|trigger\.message\.From)\s*\}\}", to) is not None


def _seconds(value: Any) -> int | None:
    try:
        seconds = float(str(value).strip())
    except ValueError:
        return None
    return int(seconds) if seconds > 0 and seconds == int(seconds) else None
