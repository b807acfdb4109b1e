"""Every technology constant has a value and a tagged source."""

from __future__ import annotations

import pytest

from hwmodels import techdata


@pytest.mark.parametrize("name", techdata.data_file_names())
def test_every_entry_has_a_tagged_source(name: str) -> None:
    entries = list(techdata.iter_entries(techdata.load_data_file(name)))
    assert entries, f"{name}.yaml has no entries"
    for path, record in entries:
        source = record["source"]
        assert isinstance(source, str) and source.strip(), f"{name}:{path} has no source"
        assert any(tag in source for tag in techdata.CONFIDENCE_TAGS), f"{name}:{path} source lacks [P]/[R]/[D]/[U]"


def test_expected_data_files_exist() -> None:
    assert {"compute", "scaling", "sram", "envm", "dram", "dvfs", "accelerator"} <= set(techdata.data_file_names())


def test_unknown_file_and_key_raise_value_error() -> None:
    with pytest.raises(ValueError, match="unknown technology data file"):
        techdata.load_data_file("nope")
    with pytest.raises(ValueError, match="no entry"):
        techdata.value("sram", "sram_12nm_0v8", "nope")
