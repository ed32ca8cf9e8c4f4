import sys

from gptcls.cli.main import main

sys.exit(main())
