"""Command-line tools (each a script: python tools/<name>.py --help); `tools.cli` is what they share."""
