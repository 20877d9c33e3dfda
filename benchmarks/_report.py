"""Shared output of the benchmark scripts: print the table, keep it as .md and .json."""

import json
from pathlib import Path


def write_report(out, text, payload):
    """Print ``text`` and write it to ``out.md``, with ``payload`` as ``out.json``."""
    print(text)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str))
