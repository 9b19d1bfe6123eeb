"""The web tool's commands through click's runner: users, import, where the database is."""

from __future__ import annotations

import gc
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from web_support import ondrejov_files, write_predictions_file

from spectraldl.cli import main
from spectraldl.jobs.ingest import ingest
from spectraldl.simulate.archive import simulate_archive
from spectraldl.web.auth import authenticate
from spectraldl.web.db import DatabaseError, open_database, resolve_url
from spectraldl.web.models import Catalogue, SpectrumRow, User


def run(*args: str, input: str | None = None):
    result = CliRunner().invoke(main, list(args), input=input)
    return result


def test_database_location_flag_environment_and_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPECTRALDL_DB", raising=False)
    assert resolve_url(None) == f"sqlite:///{tmp_path / 'spectraldl.db'}"
    assert resolve_url("other.db") == f"sqlite:///{tmp_path / 'other.db'}"
    assert resolve_url("postgresql://u:p@db.example/labels") == (
        "postgresql+psycopg://u:p@db.example/labels"
    )
    monkeypatch.setenv("SPECTRALDL_DB", f"sqlite:///{tmp_path / 'env.db'}")
    assert resolve_url(None).endswith("env.db")
    assert resolve_url("sqlite:///flag.db") == "sqlite:///flag.db"
    result = run("users", "add", "ann", "--password-stdin", input="ann-password\n")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "env.db").exists() and not (tmp_path / "spectraldl.db").exists()
    monkeypatch.delenv("SPECTRALDL_DB")
    result = run("users", "add", "ben", "--password-stdin", input="ben-password\n")
    assert result.exit_code == 0 and (tmp_path / "spectraldl.db").exists()
    with pytest.raises(DatabaseError, match="does not exist"):
        open_database(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    bad = run("users", "list", "--db", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert bad.exit_code == 1 and "cannot open the database" in bad.output
    assert "Traceback" not in bad.output


def test_users_add_list_and_passwd(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'u.db'}"
    added = run(
        "users",
        "add",
        "alice",
        "--admin",
        "--password-stdin",
        "--db",
        db_url,
        input="alice-password\n",
    )
    assert added.exit_code == 0 and "added (admin)" in added.output
    prompted = run("users", "add", "bob", "--db", db_url, input="bob-password\nbob-password\n")
    assert prompted.exit_code == 0, prompted.output
    duplicate = run("users", "add", "alice", "--password-stdin", "--db", db_url, input="x" * 10)
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output
    short = run("users", "add", "carol", "--password-stdin", "--db", db_url, input="short\n")
    assert short.exit_code == 1 and "at least 8" in short.output
    odd = run("users", "add", "<carol>", "--password-stdin", "--db", db_url, input="x" * 10)
    assert odd.exit_code == 1 and "invalid user name" in odd.output
    listing = run("users", "list", "--db", db_url)
    assert listing.output.splitlines() == ["alice  (admin)", "bob"]
    changed = run(
        "users", "passwd", "bob", "--password-stdin", "--db", db_url, input="new-bob-password\n"
    )
    assert changed.exit_code == 0
    db = open_database(db_url)
    with db.session() as session:
        assert authenticate(session, "bob", "new-bob-password") is not None
        assert authenticate(session, "bob", "bob-password") is None
        assert session.scalar(select(User.is_admin).where(User.name == "alice"))
    db.dispose()


def test_import_command_takes_fits_trees_datasets_and_predictions(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'i.db'}"
    tree = tmp_path / "tree"
    tree.mkdir()
    files = ondrejov_files()
    for path in files[:3]:
        (tree / path.name).write_bytes(path.read_bytes())
    (tree / "empty.fits").write_bytes(b"")
    dataset = tmp_path / "rest.h5"
    ingest(files[3:8], dataset, workers=1)
    ids = [p.stem for p in files[:2]]
    write_predictions_file(tmp_path / "pred.csv", ids, seed=1)
    result = run("import", str(tree), str(dataset), str(tmp_path / "pred.csv"), "--db", db_url)
    assert result.exit_code == 0, result.output
    assert "8 spectra added" in result.output and "1 bad files" in result.output
    assert "empty.fits" in result.output
    assert "catalogue 1 'pred.csv' with 2 rows" in result.output
    again = run("import", str(tree), str(dataset), "--db", db_url)
    assert "0 spectra added, 8 already in the database" in again.output
    missing = run("import", str(tmp_path / "nope.fits"), "--db", db_url)
    assert missing.exit_code == 1 and "no such file or directory" in missing.output
    nothing = run("import", "--db", db_url)
    assert nothing.exit_code == 2
    frame = write_predictions_file(tmp_path / "big.parquet", [f"x{i}" for i in range(40)], seed=2)
    kept = frame[(frame.predicted_class == "emission") & (frame.p_emission >= 0.6)]
    filtered = run(
        "import",
        str(tmp_path / "big.parquet"),
        "--db",
        db_url,
        "--classes",
        "emission",
        "--min-probability",
        "0.6",
    )
    assert filtered.exit_code == 0 and f"with {len(kept)} rows" in filtered.output
    assert 0 < len(kept) < 40
    wrong = run("import", str(tmp_path / "big.parquet"), "--db", db_url, "--classes", "bright")
    assert wrong.exit_code == 2 and "unknown class" in wrong.output
    (tmp_path / "bad.csv").write_text("name,value\na,1\n")
    no_ids = run("import", str(tmp_path / "bad.csv"), "--db", db_url)
    assert no_ids.exit_code == 1 and "needs an 'id' column" in no_ids.output
    db = open_database(db_url)
    with db.session() as session:
        rows = list(session.scalars(select(SpectrumRow)))
        assert sum(r.has_flux for r in rows) == 3 and len(rows) == 8
        assert session.scalar(select(Catalogue.n_rows).where(Catalogue.id == 1)) == 2
    db.dispose()


def test_import_refuses_a_dataset_with_non_finite_flux_naming_it(tmp_path: Path) -> None:
    import h5py
    import numpy as np

    dataset = tmp_path / "nan.h5"
    ingest(ondrejov_files()[:3], dataset, workers=1)
    with h5py.File(dataset, "r+") as h5:
        h5["X"][0, 3] = np.nan
    result = run("import", str(dataset), "--db", f"sqlite:///{tmp_path / 'i.db'}")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {dataset}: 1 rows with non-finite values (rows 0)")


def test_serve_help_teaches_the_options() -> None:
    result = run("serve", "--help")
    assert result.exit_code == 0
    for option in ("--db", "--host", "--port", "SPECTRALDL_DB"):
        assert option in result.output
    users = run("users", "--help")
    assert "add" in users.output and "passwd" in users.output


def test_serve_on_a_port_in_use_says_so_before_announcing_a_url(tmp_path: Path) -> None:
    """Another program listens on the port: one line naming it and --port, no URL first."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        db = f"sqlite:///{tmp_path / 'web.db'}"
        result = run("serve", "--db", db, "--port", str(port))
    assert result.exit_code == 1, result.output
    assert result.output == f"Error: port {port} is in use on 127.0.0.1; pick another with --port\n"


def test_commands_run_in_process_leave_no_connection_open(tmp_path: Path) -> None:
    """Each command closes its database connections when it ends, not at a garbage
    collection some time later (the cyclic collector is off here, as it may be off
    for a long while in a caller's process)."""
    path = tmp_path / "closed.db"
    db_url = f"sqlite:///{path}"

    def open_handles() -> int:
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir() if fd.is_symlink() and fd.resolve() == path)

    gc.disable()
    try:
        added = run("users", "add", "ann", "--password-stdin", "--db", db_url, input="x" * 10)
        assert added.exit_code == 0, added.output
        assert open_handles() == 0
        listing = run("users", "list", "--db", db_url)
        assert listing.output.strip() == "ann" and open_handles() == 0
        changed = run("users", "passwd", "ann", "--password-stdin", "--db", db_url, input="y" * 10)
        assert changed.exit_code == 0 and open_handles() == 0
    finally:
        gc.enable()


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["serve", "--port", "0"], "--port"),
        (["serve", "--port", "70000"], "--port"),
        (["serve", "--max-body-mb", "nan"], "--max-body-mb"),
        (["serve", "--max-upload-mb", "inf"], "--max-upload-mb"),
        (["serve", "--head-timeout", "nan"], "--head-timeout"),
        (["import", "x.h5", "--min-probability", "nan"], "--min-probability"),
        (["ssap-import", "http://localhost:1/ssap", "--size", "-1"], "--size"),
        (["ssap-import", "http://localhost:1/ssap", "--size", "nan"], "--size"),
        (["ssap-import", "http://localhost:1/ssap", "--limit", "0"], "--limit"),
        (["ssap-import", "http://localhost:1/ssap", "--timeout", "nan"], "--timeout"),
        (["ssap-import", "http://localhost:1/ssap", "--timeout", "0"], "--timeout"),
        (["ssap-import", "http://localhost:1/ssap", "--pos", "nan,1"], "--pos"),
        (["ssap-import", "http://localhost:1/ssap", "--pos", "400,0"], "--pos"),
        (["ssap-import", "http://localhost:1/ssap", "--pos", "10,-91"], "--pos"),
        (["ssap-import", "http://localhost:1/ssap", "--band", "7000,6000"], "--band"),
        (["ssap-import", "http://localhost:1/ssap", "--band", "inf,1"], "--band"),
    ],
)
def test_meaningless_numbers_are_usage_errors_naming_the_option(
    tmp_path: Path, args: list[str], option: str
) -> None:
    """Refused before the database is opened or a service asked."""
    db = tmp_path / "web.db"
    result = run(*args, "--db", str(db))
    assert result.exit_code == 2, result.output
    assert "Invalid value for" in result.output and option in result.output
    assert not db.exists()


def test_import_keeps_simulated_and_synthetic_spectra_synthetic(tmp_path: Path) -> None:
    """Files `spectraldl simulate` wrote (SIMULATD = T) were stored as real, and so were the
    candidates of a predictions table whose origin column says synthetic: `learn` then took
    them for the held-out real spectra that decide whether a new model is worse."""
    db_url = f"sqlite:///{tmp_path / 'o.db'}"
    simulate_archive(tmp_path / "sim", archive="lamost", n=3, seed=0)
    simulated = sorted((tmp_path / "sim").rglob("*.fits*"))
    assert len(simulated) == 3
    result = run("import", *map(str, simulated), "--db", db_url)
    assert result.exit_code == 0 and "3 spectra added" in result.output, result.output
    files = ondrejov_files()[:2]
    frame = write_predictions_file(
        tmp_path / "p.csv", [p.stem for p in files], sources=[str(p) for p in files]
    )
    frame["predicted_class"] = "emission"
    frame["origin"] = ["synthetic", "real"]
    frame.to_csv(tmp_path / "preds.csv", index=False)
    result = run("import", str(tmp_path / "preds.csv"), "--db", db_url)
    assert result.exit_code == 0 and "2 spectra added" in result.output, result.output
    db = open_database(db_url)
    with db.session() as session:
        origins = {r.source: r.origin for r in session.scalars(select(SpectrumRow))}
    db.dispose()
    assert origins == {
        **{str(p): "synthetic" for p in simulated},
        str(files[0]): "synthetic",
        str(files[1]): "real",
    }
