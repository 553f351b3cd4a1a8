"""What each CLI command does, as plain functions returning an exit code (cli.py only parses)."""
