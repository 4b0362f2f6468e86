"""Parquet files and HF `save_to_disk` folders: columnar inputs, written as one part file per chunk.

A Parquet file cannot be appended to or truncated, so each committed chunk becomes its own part file
(`.reftguard/parts/<output>/part-NNNNN.parquet`, written under a temporary name and renamed); the
checkpoint records how many parts each output has, a resume deletes any part past that, and the
parts are merged into `<output>.parquet` (or an HF folder `<output>/`) once the scan is complete.
Output schemas are the input schema plus the `reftguard_*` columns, so types (nested chats, class
labels) survive.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from reftguard.clients.scan.fileformat import FileFormat
from reftguard.clients.scan.rows import BUNDLE, ERROR, OUR_COLUMNS, RAW, REASON, ROLE, ROW, SCORE, TURN, VERDICT, Row

BATCH_ROWS = 1024


def _extra_fields(name: str) -> list[tuple[str, str]]:
    """(column, arrow type name) of the columns an output adds."""
    if name == "errors":
        return [(ROW, "int64"), (ERROR, "string"), (RAW, "string")]
    return [(SCORE, "float64"), (VERDICT, "string"), (TURN, "int32"), (BUNDLE, "string"), (ROLE, "string"), (REASON, "string")]


def output_schema(schema, name: str):
    import pyarrow as pa

    fields = [f for f in schema if f.name not in OUR_COLUMNS]
    return pa.schema(fields + [pa.field(c, getattr(pa, t)()) for c, t in _extra_fields(name)])


def _batch_rows(batches, start: int) -> Iterator[Row]:
    offset = 0
    for batch in batches:
        n = batch.num_rows
        if offset + n > start:
            for j, rec in enumerate(batch.to_pylist()):
                if offset + j >= start:
                    yield Row(offset + j, rec)
        offset += n


class ParquetReader:
    def __init__(self, path: Path):
        import pyarrow.parquet as pq

        self.path = path
        self.schema = pq.ParquetFile(path).schema_arrow

    def count(self) -> int:
        import pyarrow.parquet as pq

        return pq.ParquetFile(self.path).metadata.num_rows

    def rows(self, start: int = 0) -> Iterator[Row]:
        import pyarrow.parquet as pq

        yield from _batch_rows(pq.ParquetFile(self.path).iter_batches(batch_size=BATCH_ROWS), start)


def load_hf(path: Path, split: str | None):
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            raise ValueError(f"{path} is a DatasetDict with splits {sorted(ds)}; choose one with --split")
        if split not in ds:
            raise ValueError(f"{path} has no split {split!r}; it has {sorted(ds)}")
        ds = ds[split]
    return ds


class HfReader:
    def __init__(self, path: Path, split: str | None):
        self.ds = load_hf(path, split)
        self.schema = self.ds.features.arrow_schema
        self.features = self.ds.features

    def count(self) -> int:
        return len(self.ds)

    def rows(self, start: int = 0) -> Iterator[Row]:
        tail = self.ds.select(range(start, len(self.ds))) if start else self.ds
        for r in _batch_rows(tail.with_format("arrow").iter(batch_size=BATCH_ROWS), 0):
            r.index += start
            yield r


class PartsWriter:
    """Chunked writer for columnar outputs (see module doc); `finish(table, final_path)` merges."""

    def __init__(self, parts_dir: Path, final: Path, schema, finish):
        self.dir, self.final, self.schema, self.finish = parts_dir, final, schema, finish
        self.buffer: list[dict[str, Any]] = []
        self.parts = 0

    def _part(self, i: int) -> Path:
        return self.dir / f"part-{i:05d}.parquet"

    def restore(self, state: int | None) -> None:
        self.parts = int(state or 0)
        self.dir.mkdir(parents=True, exist_ok=True)
        for p in self.dir.iterdir():  # parts (and half-written temp files) past the checkpoint
            if p.suffix != ".parquet" or int(p.stem.split("-")[1]) >= self.parts:
                p.unlink()

    def write(self, records: list[dict[str, Any]]) -> None:
        self.buffer.extend(records)

    def commit(self) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.buffer:
            tmp = self.dir / f"part-{self.parts:05d}.tmp"
            pq.write_table(pa.Table.from_pylist(self.buffer, schema=self.schema), tmp)
            _fsync(tmp)
            os.replace(tmp, self._part(self.parts))
            self.parts += 1
            self.buffer = []
        return self.parts

    def finalize(self) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = [pq.read_table(self._part(i), schema=self.schema) for i in range(self.parts)]
        table = pa.concat_tables(tables) if tables else self.schema.empty_table()
        self.finish(table, self.final)
        return self.final

    def close(self) -> None:
        pass


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_parquet(table, final: Path) -> None:
    import pyarrow.parquet as pq

    tmp = final.with_name(final.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, final)


def _hf_saver(features):
    def save(table, final: Path) -> None:
        import datasets
        from datasets.table import InMemoryTable

        from datasets import utils as hf_utils

        ds = datasets.Dataset(InMemoryTable(table), info=datasets.DatasetInfo(features=features))
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        quiet = hf_utils.are_progress_bars_disabled()
        hf_utils.disable_progress_bars()  # our own progress bar is the one to watch
        try:
            # One shard even when empty: a 0-row save without a shard cannot be loaded back.
            ds.save_to_disk(str(tmp), num_shards=1)
        finally:
            if not quiet:
                hf_utils.enable_progress_bars()
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)

    return save


def _hf_features(features, name: str):
    import datasets

    kept = {k: v for k, v in features.items() if k not in OUR_COLUMNS}
    return datasets.Features({**kept, **{c: datasets.Value(t) for c, t in _extra_fields(name)}})


def _read_table_rows(table) -> Iterator[dict[str, Any]]:
    for batch in table.to_batches(BATCH_ROWS):
        yield from batch.to_pylist()


class ParquetFormat(FileFormat):
    name, suffix, reader_class = "parquet", ".parquet", ParquetReader

    def writer(self, out: Path, name: str, reader) -> PartsWriter:
        return PartsWriter(out / ".reftguard" / "parts" / name, self.output_path(out, name), output_schema(reader.schema, name), _write_parquet)

    def read_output(self, path: Path) -> Iterator[dict[str, Any]]:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
            yield from batch.to_pylist()

    def rewrite(self, path: Path, records: list[dict[str, Any]]) -> None:
        """Replace an output atomically with `records`, keeping its schema."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        _write_parquet(pa.Table.from_pylist(records, schema=pq.read_schema(path)), path)


class HfFormat(FileFormat):
    name, suffix, reader_class = "hf", "", HfReader

    def reader(self, path: Path, split: str | None = None) -> HfReader:
        return HfReader(path, split)


    def writer(self, out: Path, name: str, reader: HfReader) -> PartsWriter:
        features = _hf_features(reader.features, name)
        return PartsWriter(out / ".reftguard" / "parts" / name, self.output_path(out, name), features.arrow_schema, _hf_saver(features))

    def read_output(self, path: Path) -> Iterator[dict[str, Any]]:
        import datasets

        yield from _read_table_rows(datasets.load_from_disk(str(path)).with_format("arrow")[:])

    def rewrite(self, path: Path, records: list[dict[str, Any]]) -> None:
        """Replace an output folder with `records` (saved beside it, then swapped in), keeping its features."""
        import datasets
        import pyarrow as pa

        features = datasets.load_from_disk(str(path)).features
        _hf_saver(features)(pa.Table.from_pylist(records, schema=features.arrow_schema), path)
