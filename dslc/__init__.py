"""dslc: a declarative model-spec language and its compiler.

The pipeline is visible in the package names: dslc.dsl (parse) -> dslc.compiler
(check, build) -> dslc.runtime (train, checkpoint, export, serve).
"""

__version__ = "0.1.0"
