"""`python -m langgraph_ttc.cli` runs `ttc`."""

import sys

from langgraph_ttc.cli import main

sys.exit(main())
