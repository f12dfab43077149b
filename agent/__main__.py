import sys

from hostvigil.cli import main

sys.exit(main())
