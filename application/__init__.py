"""Use cases (one class each) and the driven ports they need, as ``typing.Protocol``s."""
