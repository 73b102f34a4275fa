"""`movierec demo`'s first look: one line per phase on the terminal, the full log in a file under
`$MOVIEREC_HOME/logs/`, no beta warnings; and the Dagster instance it writes hides the "join the
community" modal."""

import fcntl
import logging
import os
import select
import shutil
import struct
import subprocess
import sys
import termios
import uuid
import warnings
from pathlib import Path

import dagster as dg
import yaml
from dagster import AssetExecutionContext

from movierec_assets.cli.demo import RUN_CONFIG, hide_lifecycle_warnings
from movierec_assets.cli.progress import LogCapture, Phases, count_materializations, log_path
from movierec_assets.config import Paths
from movierec_assets_tests.conftest import traversable_tmpdir

SCREEN_LINES = 24


@dg.asset
def tiny_first(context: AssetExecutionContext) -> int:
    context.log.info("tiny_first says hello")
    return 1


@dg.asset
def tiny_second(context: AssetExecutionContext, tiny_first: int) -> int:
    warnings.warn("a beta notice", dg.BetaWarning, stacklevel=1)
    logging.getLogger("movierec.test").info("python logging line")
    os.write(2, b"straight to fd 2\n")  # like TensorFlow's C++ logs
    return tiny_first + 1


def _instance(pg_url: str, tmp: Path) -> dg.DagsterInstance:
    from movierec_assets.instance import prepare_dagster_home

    home = prepare_dagster_home(tmp / "dagster")
    return dg.DagsterInstance.from_config(str(home))


def run_tiny(dagster_home: Path, log: Path, verbose: bool) -> None:
    """Two tiny assets inside LogCapture and one phase line (run by `_child`, not under pytest)."""
    hide_lifecycle_warnings()
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    job = dg.Definitions(assets=[tiny_first, tiny_second], jobs=[dg.define_asset_job("tiny_job")]
                         ).resolve_job_def("tiny_job")
    with LogCapture(log, verbose=verbose) as capture:
        phases = Phases(capture.terminal, 1)
        with phases.phase("tiny assets") as phase:
            phase.grow(2)
            run_id = str(uuid.uuid4())
            with count_materializations(instance, run_id, phase, every_s=0.05):
                result = job.execute_in_process(instance=instance, run_config=RUN_CONFIG, run_id=run_id)
            phase.outcome = f"{'ok' if result.success else 'FAILED'}: 2 assets"


def _child(dagster_home: Path, log: Path, verbose: bool) -> str:
    """`run_tiny` in a fresh interpreter, as `movierec demo` runs: LogCapture owns fds 1 and 2 of
    a whole process, which pytest's own capture (and handlers that earlier imports bound to it)
    must not share. Returns what the process showed on its stdout and stderr."""
    code = ("import sys; from pathlib import Path; from movierec_assets_tests.cli.test_demo import run_tiny; "
            "run_tiny(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == '1')")
    proc = subprocess.run([sys.executable, "-c", code, str(dagster_home), str(log), "1" if verbose else "0"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_phases_on_the_terminal_and_the_full_log_in_the_file(pg_url: str, tmp_path: Path) -> None:
    _instance(pg_url, tmp_path)  # writes the instance's dagster.yaml on the test database
    log = log_path(tmp_path, "tiny")
    assert log.parent == tmp_path / "logs" and log.name.startswith("tiny-") and log.suffix == ".log"
    lines = _child(tmp_path / "dagster", log, verbose=False).splitlines()
    assert len(lines) == 1 and lines[0].startswith("[1/1] tiny assets") and "ok: 2 assets" in lines[0], lines
    text = log.read_text()
    assert "dagster - INFO - tiny_job" in text and "tiny_first says hello" in text  # Dagster's run log
    assert "INFO movierec.test: python logging line" in text and "straight to fd 2" in text
    assert "[1/1] tiny assets" in text and "BetaWarning" not in text and "a beta notice" not in text

    verbose_log = log.with_name("tiny-verbose.log")
    shown = _child(tmp_path / "dagster", verbose_log, verbose=True)  # the same log, live as well
    assert "tiny_first says hello" in shown and "straight to fd 2" in shown
    assert "tiny_first says hello" in verbose_log.read_text()


def _read_all(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 0.2)[0]:
        chunks.append(os.read(fd, 1 << 16))
    return b"".join(chunks).decode()


def test_a_bar_on_a_terminal_then_one_line() -> None:
    main, side = os.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    with os.fdopen(side, "w", buffering=1) as out:
        phases = Phases(out, 2)
        with phases.phase("counting") as phase:
            phase.grow(3)
            phase.set_done(3)
            phase.outcome = "3 things"
        with phases.phase("waiting", unit=""):
            pass
        shown = _read_all(main)
    os.close(main)
    assert "3/3 assets" in shown  # the bar, while the phase ran
    finished = [line for line in shown.replace("\r", "\n").splitlines() if line.startswith("[") and " s" in line]
    assert any("[1/2] counting" in line and "3 things" in line for line in finished), shown
    assert any("[2/2] waiting" in line and line.rstrip().endswith(" s") for line in finished), shown


def test_the_instance_hides_the_community_modal(pg_url: str, tmp_path: Path) -> None:
    instance = _instance(pg_url, tmp_path)
    written = yaml.safe_load((tmp_path / "dagster" / "dagster.yaml").read_text())
    assert written["nux"] == {"enabled": False}
    assert instance.nux_enabled is False  # what the UI asks before showing the modal


def test_movierec_demo_output_fits_on_one_screen() -> None:
    """The real command, on its own embedded server and the synthetic dataset (1 day, 1 epoch)."""
    from movierec_assets.db.embedded import EmbeddedPostgres

    home = traversable_tmpdir("movierec-demo-test-")
    env = {k: v for k, v in os.environ.items() if k not in ("MOVIEREC_DATABASE_URL", "DAGSTER_HOME")}
    command = [str(Path(sys.executable).with_name("movierec")), "demo", "--days", "1", "--epochs", "1"]
    try:
        proc = subprocess.run(command, env={**env, "MOVIEREC_HOME": str(home)}, capture_output=True, text=True,
                              timeout=900, check=False)
        logs = list((home / "logs").glob("demo-*.log"))
        text = logs[0].read_text() if len(logs) == 1 else ""
    finally:
        EmbeddedPostgres(Paths(home)).stop()
        shutil.rmtree(home, ignore_errors=True)
    shown = proc.stdout + proc.stderr
    assert proc.returncode == 0, shown[-3000:] + text[-3000:]
    lines = shown.splitlines()
    assert len(lines) <= SCREEN_LINES and all(len(line) <= 120 for line in lines), shown
    assert "Warning" not in shown and " - dagster - " not in shown, shown
    assert [line[:5] for line in lines if line.startswith("[")] == [f"[{i}/6]" for i in range(1, 7)], shown
    assert len(logs) == 1 and f"Full log: {logs[0]}" in shown, (logs, shown)
    assert text.count(" - dagster - INFO - ") >= 10 and "daily_ratings_job" in text
    assert "BetaWarning" not in text
