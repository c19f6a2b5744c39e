"""A translator's workflow: a flow's texts out to a PO or CSV file, and the translations back in.

``python -m bot translations export`` writes one entry per distinct text (or list of words) of a
flow with its current translation from the flow's ``translations:`` table; ``import`` checks what a
translator filled in and writes the table back into the same flow file, the rest of the file kept
as it was. A base text that changed since it was translated is exported as a *fuzzy* entry (the
old translation offered, the old text beside it) that import does not apply until a translator
confirms it: marked stale, never silently kept or lost.

``entries.py`` (the flow's texts, their rows, the stale guesses), ``notes.py`` (what a translator is
told about each), ``po.py`` and ``spreadsheet.py`` (the two file formats), ``vetting.py`` (what a
translation may not do), ``yaml_block.py`` (the table written back into the file) and
``workflow.py`` (export and import, end to end).
"""
