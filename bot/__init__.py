"""textflow: a self-hosted two-way SMS chatbot for Twilio, driven by YAML flows."""

__version__ = "0.1.0"
