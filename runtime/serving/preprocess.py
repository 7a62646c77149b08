"""The one place serving replays a model's recorded preprocessing (runtime.data.preprocessing).

`dslc predict` (files) and `dslc serve` (requests) both come through `prepare`
(raw inputs to model inputs) and `in_target_units` (outputs of a model trained on
a scaled target back in the units of its column), so a change to the
preprocessing's interface is met here alone.
"""

from __future__ import annotations

import numpy as np

from dslc.errors import UserError


def prepare(raw, preprocessing: dict, source: str, field=None) -> list[np.ndarray]:
    """Model inputs for `raw` (pixels, {column: values}, records, or texts); refusals prefixed with `source`,
    `field(i, column)` naming a sample's value (a file row, a request's field)."""
    from dslc.runtime.data.preprocessing import prepare_inputs
    try:
        return prepare_inputs(raw, preprocessing, field)
    except UserError as err:
        raise UserError(f"{source}: {err}" if source else str(err)) from None


def in_target_units(outputs: list[np.ndarray], preprocessing: dict, names: list[str]) -> list[np.ndarray]:
    """The model's outputs, each one trained on a scaled target converted back to its column's units."""
    if not (preprocessing or {}).get("output_units"):
        return outputs
    from dslc.runtime.data.preprocessing import to_target_units
    return to_target_units(outputs, preprocessing, names)
