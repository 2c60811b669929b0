"""`python -m validation.faults.inject`: the app with one fault of the catalogue applied.

The fault's name is in $GATE_FAULT. The gate's process targets run this module instead of `app`
when $GATE_APP_MODULE names it (the faults session sets both), so every app a session starts,
including the extra ones of the resilience session, carries the fault. Never part of the image.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    name = os.environ.get("GATE_FAULT", "")
    import app.__main__ as entry  # its library defaults are set on import, as under `python -m app`
    from validation.faults.catalogue import FAULTS

    if name:
        if name not in FAULTS:
            print(f"GATE_FAULT={name!r}: no such fault; known: {', '.join(FAULTS)}", file=sys.stderr)
            return 2
        FAULTS[name].apply()
        print(f"[fault injected] {name}: {FAULTS[name].bug}", file=sys.stderr, flush=True)
    return entry.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
