"""State as named arrays, for checkpoints: every stateful part of a run (strategy, FL algorithm, compressor,
optimizer, data loader) declares the attributes that hold its state (``state_attributes``), and
:class:`Stateful` turns them into a flat ``{name: numpy array}`` and back. Named arrays, not pickles: a checkpoint
is readable by numpy alone (``np.load``), a version of the suite cannot smuggle code into it, and each piece says
what it is.

Values an attribute may hold: numpy arrays and torch tensors (restored into the existing object, in place, so
views and optimizer references stay valid), Python numbers and bools, ``None``, lists and tuples of these, dicts
keyed by int or str (client ids: per-client state), and nested objects with their own
``state_dict``/``load_state_dict``.
"""

from __future__ import annotations

import numpy as np

from bench.runtime.client_state import HELD, ClientDict, checkpoint_in_progress

KEYS = "#keys"  # a dict's keys, so that entries absent from the template come back
LENGTH = "#len"
NONE = "#none"
NUMBER = "#py"  # a Python number (restored as one, not as a 0-d array or tensor: arithmetic on it stays Python's)
OPTIMIZER = "#optimizer"


def _is_tensor(value) -> bool:
    return hasattr(value, "detach") and hasattr(value, "dtype")


def _is_optimizer(value) -> bool:
    return hasattr(value, "param_groups") and hasattr(value, "state_dict")


def _is_module(value) -> bool:
    return hasattr(value, "named_parameters") and hasattr(value, "load_state_dict")


def flatten(out: dict, name: str, value) -> None:
    """Add ``value``'s arrays to ``out`` under ``name`` (``name/child`` for containers)."""
    if value is None:
        out[f"{name}/{NONE}"] = np.zeros(0)
    elif _is_optimizer(value):  # torch's per-parameter state (momentum, moments, steps); groups come from the config
        out[f"{name}/{OPTIMIZER}"] = np.zeros(0)
        flatten(out, f"{name}/state", value.state_dict()["state"])
    elif hasattr(value, "state_dict") and not _is_tensor(value):
        for key, array in value.state_dict().items():
            flatten(out, f"{name}/{key}", array)
    elif isinstance(value, dict):
        keys = list(value)
        integer = all(isinstance(k, (int, tuple)) for k in keys)  # client ids, (client, layer) pairs
        out[f"{name}/{KEYS}"] = np.array(keys, dtype=np.int64 if integer else str)
        written = keys
        if isinstance(value, ClientDict) and checkpoint_in_progress():  # only what changed, and where the rest is
            written = value.to_write(*checkpoint_in_progress())
            out[f"{name}/{HELD}"] = np.array([value.held[k] for k in keys], dtype=np.int64)
        for key in written:
            flatten(out, f"{name}/{_key_name(key)}", value[key])
    elif isinstance(value, (list, tuple)):
        out[f"{name}/{LENGTH}"] = np.array(len(value))
        for i, item in enumerate(value):
            flatten(out, f"{name}/{i}", item)
    elif _is_tensor(value):
        array = value.detach().cpu().numpy()
        out[name] = array if checkpoint_in_progress() else array.copy()  # a checkpoint writes it at once
    elif isinstance(value, (bool, int, float)):
        out[name] = np.array(value)
        out[f"{name}/{NUMBER}"] = np.zeros(0)
    else:
        out[name] = np.asarray(value) if checkpoint_in_progress() else np.array(value, copy=True)


def _key_name(key) -> str:
    return "-".join(map(str, key)) if isinstance(key, tuple) else str(key)


def stored_key_name(stored) -> str:
    """The name of a dict entry whose key is ``stored`` (a row of a ``#keys`` array)."""
    return _key_name(_key(stored))


def _key(stored):
    """A dict key as it was: a row of a 2-D key array is a tuple, an int64 an int, a str a str."""
    if isinstance(stored, np.ndarray):
        return tuple(int(k) for k in stored)
    return stored.item() if hasattr(stored, "item") else stored


def _children(state: dict, name: str) -> dict:
    prefix = f"{name}/"
    return {key[len(prefix) :]: array for key, array in state.items() if key.startswith(prefix)}


def restore(state: dict, name: str, template):
    """The value stored under ``name``, built into ``template`` where it has one (arrays and tensors in place)."""
    if f"{name}/{NONE}" in state:
        return None
    if f"{name}/{OPTIMIZER}" in state:
        _load_optimizer(template, restore(state, f"{name}/state", None))
        return template
    if _is_module(template):
        import torch

        template.load_state_dict({k: torch.from_numpy(v.copy(order="C")) for k, v in _children(state, name).items()})
        return template
    if template is not None and hasattr(template, "load_state_dict") and not _is_tensor(template):
        template.load_state_dict(_children(state, name))
        return template
    if f"{name}/{KEYS}" in state:
        keys = [_key(k) for k in state[f"{name}/{KEYS}"]]
        old = template if isinstance(template, dict) else {}
        restored = {k: restore(state, f"{name}/{_key_name(k)}", old.get(k)) for k in keys}
        return ClientDict(restored) if isinstance(template, ClientDict) else restored
    if f"{name}/{LENGTH}" in state:
        n = int(state[f"{name}/{LENGTH}"])
        old = list(template) if isinstance(template, (list, tuple)) else []
        items = [restore(state, f"{name}/{i}", old[i] if i < len(old) else None) for i in range(n)]
        return tuple(items) if isinstance(template, tuple) else items
    array = state[name]
    if f"{name}/{NUMBER}" in state:
        return array.item()
    return _into(template, array)


def _load_optimizer(optimizer, per_parameter: dict) -> None:
    """torch's ``load_state_dict`` with the stored per-parameter state (tensors again; Python numbers stay)."""
    import torch

    def tensor(value):
        return torch.from_numpy(value.copy(order="C")) if isinstance(value, np.ndarray) else value

    groups = optimizer.state_dict()["param_groups"]
    state = {int(i): {key: tensor(v) for key, v in entry.items()} for i, entry in per_parameter.items()}
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _into(template, array: np.ndarray):
    if _is_tensor(template):  # copied in place (same dtype and device)
        import torch

        with torch.no_grad():
            template.copy_(torch.from_numpy(array.copy(order="C")))
        return template
    if isinstance(template, np.ndarray) and template.shape == array.shape and template.dtype == array.dtype:
        np.copyto(template, array)
        return template
    if isinstance(template, (bool, int, float)) and array.ndim == 0:
        return type(template)(array.item())
    return array.copy()


class Stateful:
    """Mixin: the state of the attributes named in ``state_attributes`` as named arrays (an attribute the object
    lacks is skipped: optional parts, as localsgd's SlowMo buffers)."""

    state_attributes: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name in self.state_attributes:
            if hasattr(self, name):
                flatten(out, name, getattr(self, name))
        return out

    def load_state_dict(self, state: dict) -> None:
        for name in self.state_attributes:
            if any(key == name or key.startswith(f"{name}/") for key in state):
                setattr(self, name, restore(state, name, getattr(self, name, None)))
