"""The text vocabulary below both the flow compiler and the engine: how a message is folded
(`normalise`), the fixed word sets (`wordsets`), where a rule is matched (`matching`) and how a
message is written (`templates`)."""
