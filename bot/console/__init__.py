"""The web console for ops staff (``/console``): see :mod:`bot.console.app`."""
