"""``python -m nst_cli`` runs the ``nst`` command line."""

from nst_cli.app import main

main()
