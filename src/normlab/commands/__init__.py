"""CLI commands that stand on their own (one module each, a ``click`` command per module);
``normlab.cli`` registers them next to its core commands (run, study, list, export)."""
