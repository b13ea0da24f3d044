"""`python scripts/reference [--check]`: write (or check) every generated reference page of the manual."""

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).with_name("pages.py")), run_name="__main__")
