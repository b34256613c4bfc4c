"""The `.keras` format for the library's model classes: `model.save` takes only that format, and loading
recompiles with the saved compile arguments as the running backend can run them.

Keras's legacy HDF5 format (`model.save("x.h5")`) stores a model's class by its bare name ("MultiTaskModel"),
not by the name it is registered under ("mtmm>MultiTaskModel"), and keeps no task list or weighting: such a file
saved fine and then could not be loaded (`Unknown layer: 'MultiTaskModel'`). So the save is refused up front,
before anything is written, with the `.keras` path to use instead. `save_weights("x.weights.h5")` is unaffected.
"""

from __future__ import annotations

import os
from typing import Any

import keras

_LEGACY_SUFFIXES = (".h5", ".hdf5")


class KerasFormatSaveMixin:
    """Mixin for `keras.Model` subclasses: `save` refuses the legacy HDF5 format and names the `.keras` path;
    `compile_from_config` recompiles a loaded model."""

    def save(self, filepath: Any, *args: Any, **kwargs: Any) -> Any:
        name = os.fspath(filepath) if isinstance(filepath, (str, os.PathLike)) else ""
        if name.lower().endswith(_LEGACY_SUFFIXES) or kwargs.get("save_format") == "h5":
            keras_path = os.path.splitext(name)[0] + ".keras" if name else "model.keras"
            raise ValueError(
                f"`filepath` {name!r}: {type(self).__name__} cannot be saved in Keras's legacy HDF5 format (it could "
                f"not be loaded back). Save it as {keras_path!r} (model.save({keras_path!r})); nothing was written."
            )
        return super().save(filepath, *args, **kwargs)

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """Keras's own `compile_from_config` (which skips a model whose `compile` is overridden): compile with the
        saved arguments (another backend's execution settings replaced by this backend's,
        `mk.distribute.saved_compile_arguments`), then build the optimizer's variables."""
        from mtmm_keras.distribute import saved_compile_arguments

        self.compile(**saved_compile_arguments(keras.saving.deserialize_keras_object(config)))
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)
