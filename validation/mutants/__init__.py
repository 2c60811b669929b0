"""`nox -s mutants`: mutation testing (cosmic-ray) of the modules that decide what a user sees; each
mutant must be killed by the unit tests or the smoke gate, or be listed as harmless with a reason."""
