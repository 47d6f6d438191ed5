"""Summary of the robustness tests: fault cases and fuzz inputs tried, and how many failed.

Fault cases are the test cases of this folder and of the node fault tests in
test/ros (FAULT_TEST_FILES). Fuzz inputs are counted by ``fuzz_tally`` as the
tests feed them, including the inputs Hypothesis tries while shrinking a failure.
"""

from pathlib import Path

from . import fuzz_tally

ROBUSTNESS_DIR = Path(__file__).resolve().parent
TEST_DIR = ROBUSTNESS_DIR.parent

# Test files outside this folder whose cases are fault cases.
FAULT_TEST_FILES = (TEST_DIR / "ros" / "test_segmenter_node_faults.py",)


def _is_fault_case(report) -> bool:
    path = Path(report.fspath).resolve() if report.fspath else None
    if path is None:
        return False
    return path.is_relative_to(ROBUSTNESS_DIR) or path in FAULT_TEST_FILES


def pytest_terminal_summary(terminalreporter):
    """Print the fault cases and fuzz inputs of this run."""
    outcomes = {"passed": 0, "failed": 0, "skipped": 0}
    for outcome in outcomes:
        for report in terminalreporter.stats.get(outcome, []):
            # A case counts once: its call, or its setup when that failed or skipped it.
            if _is_fault_case(report) and (report.when == "call" or report.outcome != "passed"):
                outcomes[outcome] += 1
    for report in terminalreporter.stats.get("error", []):
        if _is_fault_case(report):
            outcomes["failed"] += 1

    cases = sum(outcomes.values())
    if cases == 0 and not fuzz_tally.inputs_tried:
        return
    terminalreporter.section("robustness")
    terminalreporter.write_line(
        f"fault cases: {cases} run, {outcomes['failed']} failed, {outcomes['skipped']} skipped"
    )
    tried = sum(fuzz_tally.inputs_tried.values())
    failed = sum(fuzz_tally.inputs_failed.values())
    terminalreporter.write_line(f"fuzz inputs: {tried} tried, {failed} failed")
    for target in sorted(fuzz_tally.inputs_tried):
        terminalreporter.write_line(
            f"  {target}: {fuzz_tally.inputs_tried[target]} tried, {fuzz_tally.inputs_failed[target]} failed"
        )
