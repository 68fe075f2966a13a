"""Allow `python -m eventforge.cli`."""

from eventforge.cli import main

main()
