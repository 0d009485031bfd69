"""Command groups of the ``eda`` command line that live in modules of their own (cli.py adds each)."""
