"""A network carried as its `.keras` bytes and loaded once, on first use."""

from __future__ import annotations

import dataclasses
from functools import cached_property
from typing import Any, Self


class Network:
    """Mixin for a frozen dataclass whose ``model_bytes`` field holds a `.keras` file.

    The network is loaded from the bytes once, on first use (safe mode). A network trained in
    this process is handed over with :meth:`loaded`, and :meth:`replace` keeps it while the
    bytes stay the same, so it is never reloaded from what it was just saved to.
    """

    model_bytes: bytes

    @cached_property
    def keras_model(self) -> Any:
        """The network, loaded once from `model_bytes`."""
        from models import lstm

        return lstm.from_bytes(self.model_bytes)

    def loaded(self, model: Any) -> Self:
        """This holder with ``model``, the network its bytes hold, as its loaded network."""
        self.__dict__["keras_model"] = model  # a frozen dataclass: set the cache directly
        return self

    def replace(self, **changes: Any) -> Self:
        """`dataclasses.replace`, keeping the loaded network unless the bytes change."""
        result = dataclasses.replace(self, **changes)
        if "model_bytes" not in changes and "keras_model" in self.__dict__:
            result.loaded(self.__dict__["keras_model"])
        return result
