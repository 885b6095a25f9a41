"""Checks that run before the (slow) model load, so a typo costs a second, not the whole run."""

from __future__ import annotations

from evalkit.errors import EvalkitError


def check_device(device: str) -> None:
    """``--device``: a name torch knows, and an accelerator this machine has."""
    import torch

    if device == "auto":
        return
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise EvalkitError(f"--device {device!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cpu":
        return
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise EvalkitError(f"--device {device}: this machine (or this torch build) has no CUDA GPU; "
                               "use --device cpu or auto")
        if parsed.index is not None and parsed.index >= count:
            raise EvalkitError(f"--device {device}: only {count} CUDA GPU(s) here (cuda:0..cuda:{count - 1})")
        return
    if parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise EvalkitError(f"--device {device}: Apple MPS is not available here; use --device cpu or auto")
        return
    raise EvalkitError(f"--device {device!r}: evalkit runs on cpu, cuda or mps; use one of those or auto")


def check_unique_tasks(selections) -> None:
    """Two specs with the same ``task:`` name would write the same samples file and results key."""
    first: dict[str, object] = {}
    for selection in selections:
        spec = selection.spec
        if spec.name in first:
            raise EvalkitError(f"{spec.path} and {first[spec.name]} both define task {spec.name!r}; "
                               "give each spec its own `task:` name")
        first[spec.name] = spec.path


def check_store(store: str | None) -> str:
    """Open the results store now (creating its tables), so a bad URL fails before the run, not after it."""
    from evalkit.store import open_store

    return open_store(store)[1]
