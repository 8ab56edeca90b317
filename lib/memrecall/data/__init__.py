"""The datasets: IdioMem, ROME's known facts, the Wikipedia control, and the paper's numbers.

* :mod:`~memrecall.data.sources`: the pinned files (URL, sha256), the resolution order
  (explicit path, ``$MEMRECALL_DATA_DIR``, cache, download) and the errors;
* :mod:`~memrecall.data.idiomem`: the IdioMem release;
* :mod:`~memrecall.data.facts`: ``known_1000.json``;
* :mod:`~memrecall.data.wikitext`: the Wikipedia control (detokenize, split, sample texts
  length-matched to IdioMem, or whole sentences);
* :mod:`~memrecall.data.paper`: the paper's own tables and digitized figures (package data);
* :mod:`~memrecall.data.idiomem_rebuild`: IdioMem's EF / EPIC / LIdioms part rebuilt from the
  raw lists.
"""

from .facts import FACTS_FIELDS, load_facts
from .idiomem import IDIOMEM_COLUMNS, IDIOMEM_FLAGS, load_idiomem
from .records import DataFormatError, unicode_problem, validate_texts
from .sources import (
    DATA_DIR_ENV,
    DATA_SOURCES,
    ChecksumError,
    DataNotFoundError,
    DataSource,
    default_cache_dir,
    provenance_table,
    resolve_data_file,
    sha256_file,
    verify_data_file,
)
from .wikitext import (
    WIKITEXT_HF_CONFIG,
    WIKITEXT_HF_DATASET,
    WIKITEXT_HF_REVISION,
    detokenize,
    load_wiki,
    split_sentences,
    wiki_sentences,
)

__all__ = [
    "DATA_DIR_ENV",
    "DATA_SOURCES",
    "FACTS_FIELDS",
    "IDIOMEM_COLUMNS",
    "IDIOMEM_FLAGS",
    "WIKITEXT_HF_CONFIG",
    "WIKITEXT_HF_DATASET",
    "WIKITEXT_HF_REVISION",
    "ChecksumError",
    "DataFormatError",
    "DataNotFoundError",
    "DataSource",
    "default_cache_dir",
    "detokenize",
    "load_facts",
    "load_idiomem",
    "provenance_table",
    "load_wiki",
    "resolve_data_file",
    "sha256_file",
    "split_sentences",
    "unicode_problem",
    "validate_texts",
    "verify_data_file",
    "wiki_sentences",
]
