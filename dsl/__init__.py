"""The .dlspec language: grammar (dlspec.lark), syntax tree, parser, formatter, YAML face, diagnostics."""
