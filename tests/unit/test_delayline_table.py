"""The delay-line parameter table: what a commit publishes and what the relay side reads back (no root needed)."""

import numpy as np
import pytest

from lasernet.net.delayline.table import ParamTable


@pytest.fixture
def table(tmp_path):
    t = ParamTable.create(str(tmp_path / "table"), n_slots=3000)
    yield t
    t.close()


def test_new_slots_are_up_with_no_delay_loss_or_rate_limit(table):
    delay_s, loss, rate_bps, up = table.read_slot(42)
    assert delay_s == [0.0, 0.0] and loss == [0.0, 0.0] and rate_bps == [0.0, 0.0] and up == [1, 1]


def test_staged_changes_are_invisible_until_commit(table):
    table.set(7, "ab", delay_s=0.012)
    assert table.read_slot(7)[0] == [0.0, 0.0]
    assert table.read_changed(0, [7]) == []
    gen = table.commit()
    assert gen == 1 and table.read_slot(7)[0] == [0.012, 0.0]


def test_commit_of_3000_links_is_one_generation_and_reader_sees_only_changed_slots(table):
    slots = np.arange(0, 3000, 2)
    table.set_many(slots, "both", delay_s=np.linspace(0.001, 0.030, slots.size), up=1)
    gen = table.commit()
    rows = table.read_changed(0, np.arange(3000))
    assert gen == 1 and [r[0] for r in rows] == slots.tolist()
    assert rows[-1][1] == [0.030, 0.030]
    table.set(5, "ba", loss=0.25)
    table.commit()
    rows = table.read_changed(gen, np.arange(3000))
    assert [(r[0], r[2]) for r in rows] == [(5, [0.0, 0.25])]


def test_reader_skips_a_record_caught_mid_write(table):
    table.set(3, delay_s=0.5)
    table.commit()
    table.records["seq"][3] += 1  # a writer is half-way through slot 3
    assert table.read_changed(0, [3]) == []


@pytest.mark.parametrize("field,value", [("loss", 1.5), ("loss", -0.1), ("delay_s", -1.0), ("rate_bps", float("nan"))])
def test_invalid_parameters_are_refused_naming_the_field(table, field, value):
    with pytest.raises(ValueError, match=field):
        table.set(1, **{field: value})


def test_slot_out_of_range_is_refused(table):
    with pytest.raises(IndexError, match="3000"):
        table.set(3000, delay_s=0.1)
