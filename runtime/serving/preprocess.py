"""The one place serving replays a model's recorded preprocessing (runtime.data.preprocessing.prepare_inputs).

`dslc predict` (files) and `dslc serve` (requests) both come through `prepare`,
so a change to the preprocessing's interface is met here alone.
"""

from __future__ import annotations

import numpy as np

from dslc.errors import UserError


def prepare(raw, preprocessing: dict, source: str) -> list[np.ndarray]:
    """Model inputs for `raw` (pixels, {column: values}, or texts); refusals prefixed with `source`."""
    from dslc.runtime.data.preprocessing import prepare_inputs
    try:
        return prepare_inputs(raw, preprocessing)
    except UserError as err:
        raise UserError(f"{source}: {err}" if source else str(err)) from None
