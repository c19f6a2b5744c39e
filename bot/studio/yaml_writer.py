"""Write an imported flow or its test as YAML that is byte-for-byte the same on every import, so imports diff well."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from bot.flows.yamlsource import read_yaml


class Text(str):
    """A message text: written in double quotes, or as a block when it has several lines."""


class Quoted(str):
    """A regular expression: written in single quotes, so backslashes stay as they are."""


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


_Dumper.add_representer(Text, _represent_text)
_Dumper.add_representer(Quoted, _represent_quoted)


def dump(document: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """The document as YAML under ``header`` (comment lines), checked to read back as the same
    data with the bot's own YAML reader."""
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100,
                     default_flow_style=False)
    data, _ = read_yaml(body)
    if data != document:  # a value YAML would misread: a bug here, never a surprise in the flow
        raise AssertionError(f"YAML output does not read back as written:\n{body}")
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header)
    return comments + body
