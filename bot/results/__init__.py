"""What flows achieve: how many people started each flow, reached each state, finished, expired or
opted out, and what they answered.

Counted as turns are committed, never by scanning conversations: the engine notes where a flow
run begins and ends (``marks.py``), the pipeline turns those notes and the trace into the turn's
``RunUpdate``s (``tracking.py``), and every store writes them in the turn's own transaction — per
flow and day counts plus one record per run (``Results`` in ``bot/store/base.py``). Reading them:
``funnel.py`` (the counts along the flow's main path) and ``table.py`` (the answers as CSV).
"""
