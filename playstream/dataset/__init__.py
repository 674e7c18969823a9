"""The playstream NPZ training-data format (docs/FORMAT.md; formats 1, 2 and 3).

Files load with ``np.load(path, allow_pickle=False)``; this package adds streaming writes with
an atomic publish, bounded-memory reads, and a validator that reports every check.
"""
from playstream.dataset.batch import RowBatch
from playstream.dataset.config import DatasetConfig
from playstream.dataset.reader import Dataset, iter_row_batches, load_npz_dataset, read_metadata
from playstream.dataset.rowrange import RowRange, RowReader, open_rows
from playstream.dataset.schema import FORMAT_NAME, FORMAT_VERSION
from playstream.dataset.validate import CheckResult, ValidationReport, validate_npz_dataset
from playstream.dataset.writer import NPZDatasetWriter

__all__ = ["CheckResult", "Dataset", "DatasetConfig", "FORMAT_NAME", "FORMAT_VERSION",
           "NPZDatasetWriter", "RowBatch", "RowRange", "RowReader", "ValidationReport",
           "iter_row_batches", "load_npz_dataset", "open_rows", "read_metadata",
           "validate_npz_dataset"]
