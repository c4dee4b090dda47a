"""No traceback, ever: every damaged input, path, option and configuration value ends as a clear message and the
exit code the README documents, through the real command line (typer's runner over the real code, and the
installed `sis2fhir` entry point in a subprocess where the process itself matters)."""

from __future__ import annotations

import csv
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sis2fhir.cli import app
from tests.support import paths

ROOT = paths.ROOT
EXAMPLE = ROOT / "examples" / "district"
AS_OF = "2026-03-31"
SIS2FHIR = Path(sys.executable).parent / "sis2fhir"
runner = CliRunner()


def _people() -> list[str]:
    """Student sourcedIds and names of the example district: none may appear in an error message."""
    with (EXAMPLE / "users.csv").open(encoding="utf-8-sig") as f:
        rows = [r for r in csv.DictReader(f) if r.get("role") == "student"]
    return [v for r in rows[:20] for v in (r["sourcedId"], r["givenName"], r["familyName"]) if len(v) > 3]


PEOPLE = _people()


def assert_clean(output: str) -> None:
    assert "Traceback" not in output, output
    for who in PEOPLE:
        assert who not in output, f"{who} in: {output}"


def sync(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    res = runner.invoke(app, ["sync", *args], env=env)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert_clean(res.output)
    return res.exit_code, res.output


def nothing_written(out: Path) -> bool:
    return not list(out.glob("*/*.ndjson"))


# ---------------------------------------------------------------- zips


def _zip(
    path: Path, method: int = zipfile.ZIP_DEFLATED, extra: Callable[[zipfile.ZipFile], None] | None = None
) -> Path:
    with zipfile.ZipFile(path, "w", method) as z:
        for f in sorted(EXAMPLE.iterdir()):
            z.write(f, f.name)
        if extra is not None:
            extra(z)
    return path


def _patch_central_directory(path: Path, offset: int, value: int, *, bits: bool = False) -> None:
    """Set a 2-byte field of every central directory entry (or OR bits into it)."""
    data = bytearray(path.read_bytes())
    i = data.find(b"PK\x01\x02")
    while i >= 0:
        old = struct.unpack_from("<H", data, i + offset)[0]
        struct.pack_into("<H", data, i + offset, old | value if bits else value)
        i = data.find(b"PK\x01\x02", i + 4)
    path.write_bytes(bytes(data))


def _flip_inside(path: Path, member: str, where: float, n: int = 1, mask: int = 0xFF) -> None:
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data = bytearray(path.read_bytes())
    at = start + int(info.compress_size * where)
    for k in range(n):
        data[at + k] ^= mask
    path.write_bytes(bytes(data))


def bad_crc(p: Path) -> None:  # a stored member with one byte changed: only its CRC-32 tells, at the end of reading
    _zip(p, zipfile.ZIP_STORED)
    _flip_inside(p, "attendance.csv", 0.97, mask=0x01)  # ASCII stays ASCII: only the CRC-32 can tell


def damaged_deflate(p: Path) -> None:
    _zip(p)
    _flip_inside(p, "attendance.csv", 0.5, 20)


def encrypted(p: Path) -> None:
    _zip(p, zipfile.ZIP_STORED)
    _patch_central_directory(p, 8, 0x1, bits=True)  # general purpose flag bit 0: encrypted


def deflate64(p: Path) -> None:
    _zip(p, zipfile.ZIP_STORED)
    _patch_central_directory(p, 10, 9)  # compression method 9: Deflate64, as Windows Explorer writes


def two_attendance(p: Path) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        _zip(p, extra=lambda z: z.write(EXAMPLE / "attendance.csv", "attendance.csv"))


def traversal(p: Path) -> None:
    _zip(p, extra=lambda z: z.writestr("../../etc/attendance.csv", "x"))


def two_spellings(p: Path) -> None:
    _zip(p, extra=lambda z: z.writestr("Users.csv", "sourcedId\n"))


def folder_member(p: Path) -> None:
    _zip(p, extra=lambda z: z.writestr(zipfile.ZipInfo("calendar.csv/"), ""))


def bomb(p: Path) -> None:
    _zip(p, extra=lambda z: z.writestr("notes.txt", b"0" * (20 << 20)))


def truncated(p: Path) -> None:
    _zip(p)
    p.write_bytes(p.read_bytes()[:3000])


def not_a_zip(p: Path) -> None:
    p.write_text("sourcedId,name\n1,a\n")


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (bad_crc, "attendance.csv in the zip .* cannot be read \\(bad CRC-32\\)"),
        (damaged_deflate, "attendance.csv in the zip .* cannot be read"),
        (encrypted, "is encrypted"),
        (deflate64, "Deflate64"),
        (two_attendance, "two members named attendance.csv"),
        (traversal, "a path outside the archive"),
        (two_spellings, "both users.csv and Users.csv"),
        (folder_member, "calendar.csv/ in the zip .* is a folder"),
        (bomb, "notes.txt in the zip .* would expand .* zip bomb"),
        (truncated, "neither a folder nor a readable .zip"),
        (not_a_zip, "neither a folder nor a readable .zip"),
    ],
    ids=lambda v: getattr(v, "__name__", "")[:30],
)
def test_a_zip_that_cannot_be_read_safely_stops_the_run_and_sends_nothing(
    tmp_path: Path, make: Callable[[Path], None], says: str
) -> None:
    archive = tmp_path / "export.zip"
    make(archive)
    code, output = sync(str(archive), "--as-of", AS_OF, "--out", str(tmp_path / "out"))
    assert code == 1, output
    assert re.search(says, output), output
    assert nothing_written(tmp_path / "out")


def test_the_zip_limits_are_configurable(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "export.zip")
    (tmp_path / "small.yaml").write_text("export: {zip_max_total_bytes: 1000}\n")
    code, output = sync(
        str(archive), "--as-of", AS_OF, "--out", str(tmp_path / "o"), "--config", str(tmp_path / "small.yaml")
    )
    assert code == 1 and "would expand to" in output and "zip_max_total_bytes" in output, output
    assert nothing_written(tmp_path / "o")
    code, output = sync(str(archive), "--as-of", AS_OF, "--out", str(tmp_path / "ok"))
    assert code == 0, output  # the same zip within the default limits is read


# ---------------------------------------------------------------- paths and permissions


def test_a_missing_export_and_a_symlink_loop_are_named(tmp_path: Path) -> None:
    code, output = sync(str(tmp_path / "nowhere"), "--as-of", AS_OF, "--out", str(tmp_path / "o"))
    assert code == 1 and "does not exist" in output
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    code, output = sync(str(tmp_path / "a"), "--as-of", AS_OF, "--out", str(tmp_path / "o"))
    assert code == 1 and "symbolic link that loops" in output, output


def test_an_export_file_that_is_a_folder_or_a_dangling_link_is_refused(tmp_path: Path) -> None:
    export = tmp_path / "export"
    shutil.copytree(EXAMPLE, export)
    (export / "calendar.csv").unlink()
    (export / "calendar.csv").mkdir()
    code, output = sync(str(export), "--as-of", AS_OF, "--out", str(tmp_path / "o"))
    assert code == 1 and "calendar.csv in the export folder" in output and "is a folder" in output, output
    (export / "calendar.csv").rmdir()
    (export / "calendar.csv").symlink_to(export / "calendar.csv")  # a link to itself: a loop
    code, output = sync(str(export), "--as-of", AS_OF, "--out", str(tmp_path / "o"))
    assert code == 1 and "symbolic link that loops or points nowhere" in output, output
    assert nothing_written(tmp_path / "o")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder an unprivileged user can use (pytest's tmp_path is private to the user running the tests)."""
    d = Path(tempfile.mkdtemp(prefix="sis2fhir-perm-"))
    d.chmod(0o777)
    yield d
    for p in d.rglob("*"):
        if not p.is_symlink():
            p.chmod(0o777)
    shutil.rmtree(d)


def run_unprivileged(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user without special rights (root reads everything, so permission faults need another one)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: permissions cannot be tested")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        probe = subprocess.run([*prefix, str(SIS2FHIR), "--version"], capture_output=True, timeout=60, check=False)
        if probe.returncode != 0:  # a checkout in a private folder (mktemp -d is 0700): nobody cannot run it
            pytest.skip("the installed sis2fhir cannot be run by an unprivileged user from this checkout's folder")
    return subprocess.run([*prefix, str(SIS2FHIR), *args], capture_output=True, text=True, timeout=120, check=False)


def test_permission_faults_are_messages_not_tracebacks(shared_dir: Path) -> None:
    export = shared_dir / "export"
    shutil.copytree(EXAMPLE, export)
    for p in [export, *export.iterdir()]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    report = shared_dir / "rows.csv"

    (export / "users.csv").chmod(0)
    done = run_unprivileged("check", str(export), "--as-of", AS_OF, "--report", str(report))
    assert done.returncode == 1 and "users.csv cannot be read: Permission denied" in done.stderr, done.stderr
    (export / "users.csv").chmod(0o644)

    export.chmod(0)
    done = run_unprivileged("check", str(export), "--as-of", AS_OF, "--report", str(report))
    assert done.returncode == 1 and "cannot be read (permission denied)" in done.stderr, done.stderr
    export.chmod(0o755)

    locked = shared_dir / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    done = run_unprivileged("sync", str(export), "--as-of", AS_OF, "--out", str(locked / "out"))
    assert done.returncode == 1 and "--out" in done.stderr and "not writable" in done.stderr, done.stderr
    done = run_unprivileged("check", str(export), "--as-of", AS_OF, "--report", str(locked / "rows.csv"))
    assert done.returncode == 1 and "--report" in done.stderr and "not writable" in done.stderr, done.stderr
    for d in (done,):
        assert_clean(d.stdout + d.stderr)
    assert list(locked.iterdir()) == []


# ---------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--as-of", "2026-02-30"], 2, "--as-of must be a date"),
        (["--as-of", "yesterday"], 2, "--as-of must be a date"),
        (["--workers", "-1"], 2, "--workers"),
        (["--policy", "strict"], 2, "--policy must be one of crdc, essa"),
        (["--state-id", "ssn"], 2, "state_id_source 'ssn' is not one of"),
        (["--destination", "ftp://files.example.org/out"], 1, "ftp://... is not supported"),
        (["--destination", "mllp://hie.example.org:99999"], 1, "port 1-65535"),
        (["--destination", "mllp://hie.example.org"], 1, "port 1-65535"),
        (["--destination", "https://"], 1, "has no host"),
        (["--destination", "https://sis:hunter2@ehr.example.org/fhir"], 1, "must not hold a user name or password"),
        (["--store", "mysql://u@db.example.org/state"], 1, "keeps its state in SQLite"),
        (["--no-such-option"], 2, "No such option"),
    ],
)
def test_a_bad_option_is_a_message_with_its_exit_code(tmp_path: Path, args: list[str], code: int, says: str) -> None:
    base = ["--as-of", AS_OF] if "--as-of" not in args else []
    out = [] if "--destination" in args else ["--out", str(tmp_path / "out")]
    got, output = sync(str(EXAMPLE), *base, *out, *args)
    assert got == code, output
    assert says in output, output
    assert "hunter2" not in output
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("*.sqlite"))  # checked before anything


def test_out_and_report_are_checked_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    code, output = sync(str(EXAMPLE), "--as-of", AS_OF, "--out", str(tmp_path / "a-file"))
    assert code == 1 and "is a file, not a folder" in output, output
    code, output = sync(str(EXAMPLE), "--as-of", AS_OF, "--out", str(tmp_path / "o"), "--report", str(tmp_path))
    assert code == 2 and "is a folder" in output, output
    code, output = sync(
        str(EXAMPLE), "--as-of", AS_OF, "--out", str(tmp_path / "o"), "--report", str(tmp_path / "a-file" / "r.csv")
    )
    assert code == 1 and "cannot be written" in output, output
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- configuration


def one(destination: str) -> str:
    return f"recipients: [{{identifier: '1', destinations: [{destination}]}}]"


FHIR = "type: fhir, url: 'https://e/fhir'"


@pytest.mark.parametrize(
    ("yaml_text", "says"),
    [
        (
            one("{type: mllp, host: hie, port: 99999}"),
            "port: Input should be less than or equal to 65535 (found 99999)",
        ),
        (one("{type: mllp, host: hie, port: 0}"), "between 1 and 65535"),
        (
            one("{type: fhir, url: ehr.example.org/fhir}"),
            "must start with https://",
        ),
        (one("{type: fhir, url: 'gopher://ehr/fhir'}"), "not gopher://"),
        (one("{type: fhir, url: 'https:///fhir'}"), "has no host"),
        (
            one("{" + FHIR + ", bundle_size: 5000}"),
            "bundle_size",
        ),
        (
            one("{type: ndjson, folder: /etc/hostname}"),
            "is a file, not a folder",
        ),
        (
            one("{" + FHIR + ", auth: {type: bearer, token: 'sk-live-12345'}}"),
            "must be a reference",
        ),
        (
            one("{" + FHIR + ", auth: {type: bearer, token: 'env:SIS2FHIR_NO_SUCH_TOKEN'}}"),
            "SIS2FHIR_NO_SUCH_TOKEN",
        ),
        (
            one("{" + FHIR + ", auth: {type: bearer, token: 'file:/nonexistent/token'}}"),
            "cannot read /nonexistent/token",
        ),
        (
            one(
                "{"
                + FHIR
                + ", auth: {type: smart-backend, client_id: c, key_id: k, private_key: 'file:/etc/hostname'}}"
            ),
            "not an unencrypted PEM private key",
        ),
        (one("{type: pigeon}"), "type"),
        ("store_url: 'postgresql+psycopg://u@h'", "names no PostgreSQL database"),
        ("store_url: 'not a url'", "not a database URL"),
        ("stor_url: x", "stor_url: unknown setting"),
        ("policy: {preset: essa, threshold_percent: 500}", "threshold_percent"),
        ("export: {zip_max_ratio: 0}", "zip_max_ratio"),
        ("[1, 2", "not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping at the top level"),
    ],
)
def test_a_bad_configuration_is_refused_when_read(tmp_path: Path, yaml_text: str, says: str) -> None:
    cfg = tmp_path / "sis2fhir.yaml"
    cfg.write_text(yaml_text + "\n")
    code, output = sync(str(EXAMPLE), "--as-of", AS_OF, "--config", str(cfg), "--out", str(tmp_path / "out"))
    assert code == 1, output
    assert says in output, output
    assert "sk-live-12345" not in output
    assert not (tmp_path / "out").exists()


def test_a_secret_variable_is_named_never_its_value(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "recipients: [{identifier: '1', destinations: [{type: fhir, url: 'https://e/fhir', "
        "auth: {type: smart-backend, client_id: c, key_id: k, private_key: 'env:SIS2FHIR_TEST_PEM'}}]}]\n"
    )
    code, output = sync(
        str(EXAMPLE), "--as-of", AS_OF, "--config", str(cfg), env={"SIS2FHIR_TEST_PEM": "hunter2-not-a-key"}
    )
    assert code == 1 and "env:..." in output and "not an unencrypted PEM private key" in output, output
    assert "hunter2" not in output


def test_environment_variables_that_do_not_parse_are_named(tmp_path: Path) -> None:
    code, output = sync(
        str(EXAMPLE), "--as-of", AS_OF, "--out", str(tmp_path / "o"), env={"SIS2FHIR_RECIPIENTS": "[oops"}
    )
    assert code == 1 and "environment variable" in output and "recipients" in output, output
    code, output = sync(str(EXAMPLE), "--as-of", AS_OF, "--out", str(tmp_path / "o"), env={"SIS2FHIR_WORKERS": "many"})
    assert code == 1 and "workers" in output, output


# ---------------------------------------------------------------- the state store


def test_a_state_store_that_cannot_be_used_is_named_without_sql_or_password(tmp_path: Path) -> None:
    (tmp_path / "junk.sqlite").write_bytes(b"this is not a database\n" * 100)
    code, output = sync(
        str(EXAMPLE), "--as-of", AS_OF, "--out", str(tmp_path / "o"), "--store", str(tmp_path / "junk.sqlite")
    )
    assert code == 1 and "junk.sqlite cannot be used: file is not a database" in output, output

    first = tmp_path / "first"
    assert sync(str(EXAMPLE), "--as-of", AS_OF, "--out", str(first))[0] == 0
    read_only = f"sqlite:///file:{first / 'state.sqlite'}?mode=ro&uri=true"
    code, output = sync(str(EXAMPLE), "--as-of", AS_OF, "--out", str(tmp_path / "o2"), "--store", read_only)
    assert code == 1 and "readonly database" in output and "read-only for this user" in output, output
    assert "INSERT" not in output and "parameters" not in output.lower()

    with __import__("socket").socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pg = f"postgresql+psycopg://sis2fhir:s3cret-pw@127.0.0.1:{port}/state"
    code, output = sync(str(EXAMPLE), "--as-of", AS_OF, "--out", str(tmp_path / "o3"), "--store", pg)
    assert code == 1 and "cannot be used" in output and "***" in output, output
    assert "s3cret-pw" not in output


# ---------------------------------------------------------------- the last-resort guard


def test_an_unexpected_fault_is_one_line_without_data_and_exit_70(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sis2fhir.pipeline

    student = PEOPLE[0]

    def broken(*_a: object, **_k: object) -> None:
        raise KeyError(f"{student} Jane")  # what a bug's message could hold

    monkeypatch.setattr(sis2fhir.pipeline, "read_calendar", broken)
    code, output = sync(str(EXAMPLE), "--as-of", AS_OF, "--out", str(tmp_path / "o"))
    assert code == 70, output
    assert "internal error: KeyError in sis2fhir.pipeline:" in output  # the innermost frame of sis2fhir's code
    assert "(no input data in this message); please report it" in output
    assert "Jane" not in output

    res = runner.invoke(
        app, ["sync", str(EXAMPLE), "--as-of", AS_OF, "--out", str(tmp_path / "o")], env={"SIS2FHIR_DEBUG": "1"}
    )
    assert res.exit_code == 70 and "Traceback" in res.output and "internal error: KeyError" in res.output


def test_the_installed_command_never_prints_a_traceback(tmp_path: Path) -> None:
    version = subprocess.run([str(SIS2FHIR), "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert version.returncode == 0 and version.stdout.strip().startswith("sis2fhir 0.")
    archive = tmp_path / "export.zip"
    bad_crc(archive)
    done = subprocess.run(
        [str(SIS2FHIR), "sync", str(archive), "--as-of", AS_OF, "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1 and "bad CRC-32" in done.stderr, done.stderr
    assert_clean(done.stdout + done.stderr)
    helped = subprocess.run([str(SIS2FHIR), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert helped.returncode == 0 and "70 internal error" in " ".join(helped.stdout.split())
