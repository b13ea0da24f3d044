"""`python -m exporter`: the same command line as `session-pool-exporter`."""

import sys

from exporter.launch import main

if __name__ == "__main__":
    sys.exit(main())
