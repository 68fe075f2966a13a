"""`python -m chaos` (what `make chaos` runs)."""

from chaos.run import main

raise SystemExit(main())
