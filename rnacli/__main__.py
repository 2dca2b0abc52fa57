"""`python -m rnacli` (and `accelerate launch -m rnacli`) run the CLI."""

from rnacli.cli import main

main()
