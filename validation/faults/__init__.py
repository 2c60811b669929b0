"""The fault catalogue and `nox -s faults`: realistic bugs injected into the real app
from outside the shipped code; the gate must catch each one."""
