"""``python -m server_setup``: ops tooling for the class's shared inference server."""

import sys

from server_setup.cli import main

if __name__ == "__main__":
    sys.exit(main())
