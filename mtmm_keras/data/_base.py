"""The base TFDS builder shared by the offline datasets: sized configs, licence/source fields, no registration.

The builders are *not* added to TFDS's global registry (`skip_registration=True`): TFDS already has a
`penguins` dataset, and unregistered builders can be imported any number of times. A prepared
folder still loads with plain TFDS from the files, e.g.
`tfds.load("mfeat", data_dir=d, download=False, try_gcs=False)` (use `"penguins/full"` for
penguins, since the bare name resolves to TFDS's own penguins builder).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import tensorflow_datasets as tfds


@dataclasses.dataclass(eq=False)
class SizedConfig(tfds.core.BuilderConfig):
    """A builder config that fixes how many examples each split gets."""

    train_size: int = 0
    test_size: int = 0


class OfflineBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A generator-based builder whose sources are local files; subclasses fill in the class fields."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    INPUTS: ClassVar[tuple[str, ...]] = ()  # feature keys that `mk.data.load` puts in x
    LABELS: ClassVar[tuple[str, ...]] = ()  # feature keys that `mk.data.load` puts in y
    DESCRIPTION: ClassVar[str] = ""
    SOURCE: ClassVar[str] = ""
    LICENSE: ClassVar[str] = ""
    HOMEPAGE: ClassVar[str] = ""
    CITATION: ClassVar[str] = ""

    @classmethod
    def check_sources(cls) -> None:
        """Raise `SourceNotFoundError` (saying how to install it) if a raw source is missing."""

    def _features(self) -> tfds.features.FeaturesDict:
        raise NotImplementedError

    def _static_metadata(self) -> dict[str, Any]:
        """Metadata known before generation (generation may add more, e.g. standardisation statistics)."""
        return {}

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo(builder=self, ...) rather than dataset_info_from_configs: the latter reads
        # README/citation files from a per-dataset package folder that these modules do not have.
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=self._features(),
            homepage=self.HOMEPAGE or None,
            citation=self.CITATION or None,
            license=self.LICENSE or None,
            metadata=tfds.core.MetadataDict(self._static_metadata()),
        )

    @property
    def sized_config(self) -> SizedConfig:
        """The builder config, typed."""
        return self.builder_config  # type: ignore[return-value]
