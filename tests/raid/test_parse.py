"""The storcli/perccli JSON parsers on real recorded outputs (tests/fixtures/raid, origins in INDEX.md)."""

from __future__ import annotations

import pytest

from hostvigil.collectors.raid.parse import (
    Battery,
    CommandFailure,
    Controller,
    DriveInfo,
    PhysicalDrive,
    VirtualDrive,
    parse_controllers,
    parse_drives,
)
from tests.conftest import FIXTURES

STORCLI = FIXTURES / "raid"
CONTROLLERS = STORCLI / "textfile-collector-scripts__storcli_-cALL_show_all.json"
DRIVES = STORCLI / "textfile-collector-scripts__storcli_-cALL-eALL-sALL_show_all.json"
INTEL_SHOW = STORCLI / "pystorcli2__set_state_offline_00__c0_show_J.json"
OFFLINE_DRIVE = STORCLI / "pystorcli2__set_state_offline_00__c0_e35_s12_show_J.json"
FAILED_COMMAND = STORCLI / "pystorcli2__error_codes_01__c0_e252_s7_set_good_J.json"
NO_CONTROLLER = STORCLI / "pystorcli2__controllerSet_test00__show_J.json"


def test_controller_with_raid6_and_cachevault() -> None:
    """storcli 007.1616 on a Fujitsu PRAID EP420i: one RAID6 of four SSDs, CacheVault module."""
    controllers, failures = parse_controllers(CONTROLLERS.read_text())
    assert failures == []
    ssd = "Micron_5200_MTFDDAK960TDC"
    assert controllers == [
        Controller(
            index=0,
            status="Optimal",
            model="PRAID EP420i",
            serial="0000000061913681",
            firmware="4.680.00-8417",
            virtual_drives=(VirtualDrive("/c0/v0", drive_group=0, raid_level="RAID6", state="Optl", name=None),),
            physical_drives=(
                PhysicalDrive("/c0/e252/s0", "Onln", 0, ssd),
                PhysicalDrive("/c0/e252/s1", "Onln", 0, ssd),
                PhysicalDrive("/c0/e252/s4", "Onln", 0, ssd),
                PhysicalDrive("/c0/e252/s5", "Onln", 0, ssd),
            ),
            batteries=(Battery("CacheVault", "CVPM02", "Optimal"),),
        )
    ]


def test_drive_listing_with_counters() -> None:
    drives, failures = parse_drives(DRIVES.read_text())
    assert failures == []
    assert [d.id for d in drives] == ["/c0/e252/s0", "/c0/e252/s1", "/c0/e252/s4", "/c0/e252/s5"]
    assert drives[0] == DriveInfo(
        id="/c0/e252/s0", controller=0, device_id=2, state="Onln",
        media_errors=0, other_errors=0, predictive_failures=0, smart_alert=False,
        temperature_celsius=21.0,  # " 21C (69.80 F)"
        model="Micron_5200_MTFDDAK960TDC", serial="20032656D641",
        firmware="D1MU004",  # " D1MU004": storcli's padding is not part of it
    )
    assert [(d.device_id, d.serial) for d in drives] == [
        (2, "20032656D641"), (3, "20032656D63C"), (7, "20032656D649"), (6, "20032656D5D1"),
    ]


def test_older_show_output_names_the_controller_differently() -> None:
    """`/c0 show J` (storcli 007.1704, Intel RS3DC080): "Product Name"/"FW Version", no status section, no battery."""
    controllers, failures = parse_controllers(INTEL_SHOW.read_text())
    assert failures == []
    [controller] = controllers
    assert (controller.index, controller.model, controller.serial, controller.firmware) == (
        0, "Intel(R) RAID Controller RS3DC080", "SK75074929", "4.650.00-8128",
    )
    assert controller.status is None  # not reported by this command: unknown, not unhealthy
    assert controller.batteries == ()
    assert controller.virtual_drives == (VirtualDrive("/c0/v1", 2, "RAID0", "Optl", "dummy"),)
    assert len(controller.physical_drives) == 12
    assert controller.physical_drives[0] == PhysicalDrive("/c0/e35/s12", "UGood", None, "HUS726040AL5210")
    assert {pd.state for pd in controller.physical_drives} == {"UGood"}
    assert controller.physical_drives[-1].id == "/c0/e35/s23"


def test_drive_show_without_details_has_no_counters() -> None:
    """`/c0/e35/s12 show J` of a drive just set offline: a "Drive Information" row, no detailed section."""
    drives, failures = parse_drives(OFFLINE_DRIVE.read_text())
    assert failures == []
    assert drives == [
        DriveInfo(
            id="/c0/e35/s12", controller=0, device_id=21, state="Offln",
            media_errors=None, other_errors=None, predictive_failures=None, smart_alert=None,
            temperature_celsius=None, model="HUS726040AL5210", serial=None, firmware=None,
        )
    ]


def test_failed_command_is_reported_with_storcli_description() -> None:
    text = FAILED_COMMAND.read_text()
    expected = [CommandFailure(0, "Set Drive Good Failed. (Operation not allowed.)")]
    assert parse_controllers(text) == ([], expected)
    assert parse_drives(text) == ([], expected)


def test_system_overview_without_controllers_is_not_a_controller() -> None:
    assert parse_controllers(NO_CONTROLLER.read_text()) == ([], [])
    assert parse_drives(NO_CONTROLLER.read_text()) == ([], [])


def test_controller_output_holds_no_drive_details() -> None:
    """The two commands' outputs are told apart by content, not trusted by name."""
    assert parse_drives(CONTROLLERS.read_text()) == ([], [])


def test_banner_before_the_json_is_skipped() -> None:
    controllers, _ = parse_controllers("storcli: some banner line\n" + CONTROLLERS.read_text())
    assert [c.model for c in controllers] == ["PRAID EP420i"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not JSON"),
        ("Invalid command.\n", "not JSON"),
        ("\x00\x17{garbage}", "not JSON"),
        ('{"smartctl": {"version": [7, 3]}}', "no 'Controllers' list"),
        ('{"Controllers": {"0": {}}}', "no 'Controllers' list"),
    ],
)
def test_text_that_is_not_storcli_json_is_rejected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_controllers(text)
    with pytest.raises(ValueError, match=message):
        parse_drives(text)
