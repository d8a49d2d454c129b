import sys

from gsomia.shell.cli import main

sys.exit(main())
