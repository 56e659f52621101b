from s2s.cli import cli

cli()
