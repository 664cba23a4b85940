"""Label and data tools (each a script: python tools_jss/<name>.py --help)."""
