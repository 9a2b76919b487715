"""The dataset catalog cold-start searches when it is given a description and no `--data`.

Sources (each a `CatalogSource`): the datasets inside installed packages and the shared benchmark data
(cards written for matching, engine.catalog.packaged), the files in a local folder (cards inferred
from each file, or a sidecar NAME.card.json, engine.catalog.local), and the Hugging Face Hub when it
is reachable (engine.catalog.hub). `Catalog.search` ranks every card by meaning under the embedded
MiniLM encoder, checks the task type and the labels the description names, and accepts only matches
above a calibrated similarity floor (engine.catalog.search).
"""

from engine.catalog.cards import CARD_SUFFIX, CatalogSource, DatasetCard, Listing, read_sidecar
from engine.catalog.hub import HubSource
from engine.catalog.local import LocalFolderSource, infer_task
from engine.catalog.packaged import PackagedSource, SharedDataSource, shared_name
from engine.catalog.search import FLOOR, Catalog, CatalogSearch, Match, default_catalog, listed_labels

__all__ = [
    "CARD_SUFFIX", "FLOOR", "Catalog", "CatalogSearch", "CatalogSource", "DatasetCard", "HubSource", "Listing",
    "LocalFolderSource", "Match", "PackagedSource", "SharedDataSource", "default_catalog", "infer_task",
    "listed_labels", "read_sidecar", "shared_name",
]
