"""textflow: a self-hosted two-way SMS chatbot for Twilio, driven by YAML flows."""

__version__ = "0.2.0.dev0"

# The bot's log records are masked (phone numbers, URLs) before any handler sees them, whoever
# configures logging: bot/logs.py puts a masking NullHandler on the "bot" logger (no level, no output).
from bot import logs as _logs  # noqa: E402,F401
