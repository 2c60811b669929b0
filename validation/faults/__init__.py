"""The fault catalogue and `nox -s faults` (issue 12): realistic bugs injected into the real app
from outside the shipped code; the gate must catch each one."""
