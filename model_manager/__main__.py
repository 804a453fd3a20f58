import sys

from model_manager.cli import main

sys.exit(main())
