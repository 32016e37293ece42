"""`python -m realsr_fast VERB ...`: the `realsr` command (what torchrun -m runs)."""
import sys

from realsr_fast.cli import main

if __name__ == "__main__":
    sys.exit(main())
