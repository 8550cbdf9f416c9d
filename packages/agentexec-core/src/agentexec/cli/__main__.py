import sys

from agentexec.cli import main

sys.exit(main())
