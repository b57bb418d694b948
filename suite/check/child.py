"""One spec's check in a process of its own (`check --all` starts one per spec):
``python -m suite.check.child ROWS_JSON SPEC '{"profile": ..., "ref_root": ..., ...}'``."""

import json
import sys
from pathlib import Path

from suite.check import check_spec, write_rows
from suite.errors import UserError
from suite.run.allocator import keep_freed_memory

if __name__ == "__main__":
    rows_json, spec, raw = sys.argv[1:4]
    args = json.loads(raw)
    keep_freed_memory()  # as every run of the command line
    try:
        rows = check_spec(spec, args["profile"], Path(args["ref_root"]), args["update"], args["seeds"],
                          data_dir=args["data_dir"], timing=args["timing"])
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    write_rows(rows, Path(rows_json))
