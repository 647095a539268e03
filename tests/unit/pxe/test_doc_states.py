"""The PXE docs filter the machine list by state with jq (`select(.state == "pending")`): every
state they name must be one the code answers, or the documented loop silently finds nothing
(as `unknown` did once machines enrolled and became `pending`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest

from pxe.enlistment import MachineState

DOCS = Path(__file__).resolve().parents[3] / "docs"
PXE_DOCS = ("pxe.md", "pxe-rack.md")

# A jq program in single quotes after `jq` (and its options); it may span lines.
JQ_PROGRAM = re.compile(r"\bjq\b(?:\s+-\w+)*\s+'([^']*)'")
STATE_COMPARED = re.compile(r"\.state\s*[!=]=\s*\"([^\"]*)\"")


def states_filtered(text: str) -> list[str]:
    """Every state a jq program in `text` compares `.state` with."""
    return [state for program in JQ_PROGRAM.findall(text) for state in STATE_COMPARED.findall(program)]


def test_the_parser_finds_states_in_one_and_multi_line_programs() -> None:
    text = """curl ... | jq '.[] | select(.state == "pending")'
    x | jq -r 'sort_by(.first_seen) | .[] | select(.state=="approved" or .state != "joined")
             | .mac'"""
    assert states_filtered(text) == ["pending", "approved", "joined"]


@pytest.mark.parametrize("doc", PXE_DOCS)
def test_every_state_the_docs_filter_on_exists(doc: str) -> None:
    filtered = states_filtered((DOCS / doc).read_text())
    assert filtered, f"{doc} no longer filters machines by state: update this test with it"
    unknown = sorted(set(filtered) - set(get_args(MachineState)))
    assert not unknown, f"{doc} filters on states the code never answers: {unknown}"


def test_the_rack_procedure_names_the_machines_waiting_for_approval() -> None:
    # The "name machines as they appear" loop approves enrolled machines: only `pending` ones can be.
    assert "pending" in states_filtered((DOCS / "pxe-rack.md").read_text())
