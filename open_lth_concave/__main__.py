import sys

from open_lth_concave.cli import main

sys.exit(main())
