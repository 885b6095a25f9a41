"""``python -m evalkit ...``: the same command line as ``evalkit`` (and so ``accelerate launch -m evalkit run ...``)."""

import sys

from evalkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
