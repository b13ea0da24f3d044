"""`python scripts/reference [--check]`: write (or check) every reference page of the manual."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pages import main

raise SystemExit(main())
