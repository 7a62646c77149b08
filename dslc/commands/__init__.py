"""The command-line verbs beyond the language ones: each module adds its verbs to `dslc` (see dslc/cli.py)."""
