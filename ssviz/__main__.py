import sys

from ssviz.cli import main

sys.exit(main())
