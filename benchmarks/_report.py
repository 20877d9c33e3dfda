"""Shared parts of the benchmark scripts: print the table, keep it as .md and .json; run
a comparison line with an environment switch set."""

import contextlib
import json
import os
from pathlib import Path


@contextlib.contextmanager
def environment(name, value):
    """The environment variable ``name`` set to ``value`` inside, restored after."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous


def write_report(out, text, payload):
    """Print ``text`` and write it to ``out.md``, with ``payload`` as ``out.json``."""
    print(text)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str))
