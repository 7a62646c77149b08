"""Editor support built from the catalogs: the Pygments lexer and the JSON Schema of the YAML face."""
