import sys

from gptcls.cli import main

sys.exit(main())
