"""The flow language: YAML files written by ops staff, validated, compiled to state machines."""
