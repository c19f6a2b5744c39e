"""Import a Twilio Studio flow export as a flow file with its conversation test (``python -m bot import-studio``)."""

from bot.studio.convert import NAME_RE, Imported, Options, flow_name_from, import_flow, read_export, trigger_problem
from bot.studio.errors import StudioError, Unsupported, UnsupportedWidgets
from bot.studio.yaml_writer import dump

__all__ = ["NAME_RE", "Imported", "Options", "StudioError", "Unsupported", "UnsupportedWidgets", "dump",
           "flow_name_from", "import_flow", "read_export", "trigger_problem"]
