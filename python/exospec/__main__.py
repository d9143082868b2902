"""``python3 -m exospec plot ...``: the quick-look plots (exospec.plot) from the command line."""
import sys

from .plot import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["plot"]:
        argv = argv[1:]
    sys.exit(main(argv))
