"""``python -m rankcore.batch``: the batch job without the ``rankcore`` command line."""
import argparse
import sys

from . import configure_parser, main

sys.exit(main(configure_parser(argparse.ArgumentParser(prog="python -m rankcore.batch")).parse_args()))
