"""Run ids: every scenario name the validator accepts gives an id the relay's table and socket names accept."""

from __future__ import annotations

import re

from lasernet.emulation.state import new_run_id
from lasernet.net.delayline.table import RUN_ID_MAX_LEN, control_address_for, table_path_for, validate_run_id


def test_run_id_of_the_longest_scenario_name_is_valid_for_the_relay():
    for name in ("mini", "starlink-phase1-20gs", "a" * 40, "x" * 16 + "-" + "y" * 23):
        run_id = validate_run_id(new_run_id(name))  # a 20-character name once failed here, after nodes existed
        assert len(run_id) <= RUN_ID_MAX_LEN
        stamp, rest = run_id[:15], run_id[16:]
        assert re.fullmatch(r"\d{8}-\d{6}", stamp)
        short, pid = rest.rsplit("-", 1)
        assert name.startswith(short) and short and not short.endswith("-") and pid.isdigit()
        table_path_for(run_id), control_address_for(run_id)
