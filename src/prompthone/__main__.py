"""`python -m prompthone ...` is the `prompthone` command (for environments without the script on PATH)."""

from prompthone.cli.main import app

app(prog_name="prompthone")
