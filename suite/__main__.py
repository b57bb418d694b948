"""``python -m suite``: the command line (suite/cli.py)."""

import sys

try:
    from suite.cli import main
except KeyboardInterrupt:  # Ctrl-C while the modules load: a line, not a traceback
    print("interrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
