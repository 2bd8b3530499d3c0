import sys

from vocal_remover_jax.cli import main

sys.exit(main())
