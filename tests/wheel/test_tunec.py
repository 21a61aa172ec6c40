"""The installed wheel, as a user meets it: the `tunec` command on the PATH of a fresh virtualenv
without a Rust toolchain, `python -m tunec`, and the `tunec` module's `check()`, `plan()` and
`version()` on the repository's examples and fixtures.

.ci/wheel.sh installs the wheel and runs these tests from the repository root. The module must come
from the virtualenv's site-packages, never from python/ in the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import types
import typing
from pathlib import Path
from typing import Any

import pytest

import tunec

ROOT = Path(__file__).resolve().parents[2]
MEDREASON = "examples/medreason/medreason.tune"
PIPELINES = sorted(
    str(p.relative_to(ROOT)) for folder in ("examples", "tests/cases") for p in (ROOT / folder).rglob("*.tune")
)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed `tunec` command, found on the PATH as a shell finds it."""
    return subprocess.run(["tunec", *args], capture_output=True, text=True, check=False, cwd=ROOT)


def test_the_wheel_is_what_runs_and_no_rust_toolchain_is_on_the_path() -> None:
    scripts = Path(sysconfig.get_path("scripts"))
    assert shutil.which("cargo") is None and shutil.which("rustc") is None, os.environ["PATH"]
    assert shutil.which("tunec") == str(scripts / "tunec")
    assert tunec.find_binary() == str(scripts / "tunec")
    assert Path(tunec.__file__).is_relative_to(sysconfig.get_path("purelib")), tunec.__file__
    assert not Path(tunec.__file__).is_relative_to(ROOT)


def test_tunec_check_and_plan_run_from_the_path() -> None:
    done = cli("check", MEDREASON)
    assert done.returncode == 0, done.stderr
    assert "pipeline `medreason`: 7 nodes, target sagemaker" in done.stdout
    assert done.stderr.strip().endswith("no problems found")
    done = cli("plan", MEDREASON)
    assert done.returncode == 0, done.stderr
    assert "SageMaker training job medreason-sft-" in done.stdout


def test_python_m_tunec_is_the_command() -> None:
    module = subprocess.run(
        [sys.executable, "-m", "tunec", "check", "tests/cases/fsdp_qlora_storage.tune"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    command = cli("check", "tests/cases/fsdp_qlora_storage.tune")
    assert module.returncode == command.returncode == 1
    assert module.stderr == command.stderr
    assert "tunec::check::fsdp_qlora_storage" in module.stderr
    assert subprocess.run([sys.executable, "-m", "tunec", "--version"], capture_output=True, text=True).stdout == (
        cli("--version").stdout
    )


def test_the_version_is_the_packages_and_names_the_commit() -> None:
    info = tunec.version()
    assert info.version == tunec.__version__
    assert cli("--version").stdout == (
        f"tunec {info.version} ({info.commit} {info.date}{', debug build' if info.debug else ''})\n"
    )
    expected = os.environ.get("TUNEC_EXPECT_COMMIT")
    if expected is None:
        pytest.fail("TUNEC_EXPECT_COMMIT (the commit the wheel was built from) is not set: run .ci/wheel.sh")
    assert info.commit is not None and expected.startswith(info.commit) and len(info.commit) == 12
    assert info.debug == (os.environ.get("TUNEC_WHEEL_PROFILE") == "dev")


def test_check_returns_the_document_of_the_command() -> None:
    result = tunec.check(MEDREASON)
    assert result == json.loads(cli("check", "--format", "json", MEDREASON).stdout)
    assert result["summary"] == {"errors": 0, "warnings": 0}
    assert [n["name"] for n in result["nodes"]] == ["llama", "raw", "convo", "parts", "sft", "merged", "report"]
    jobs = {n["name"]: n["estimate"] for n in result["nodes"] if n["estimate"] is not None}
    assert sorted(jobs) == ["merged", "report", "sft"]
    sft = jobs["sft"]
    assert sft["instance"] == "ml.p4d.24xlarge"
    assert sum(sft["gpu_terms"].values()) == sft["gpu_peak_bytes"] < sft["gpu_capacity_bytes"]
    assert result["total"] is not None and result["total"]["complete"]


def test_errors_are_in_the_result_with_spans_into_the_file() -> None:
    path = ROOT / "tests/cases/fsdp_qlora_storage.tune"
    result = tunec.check(path)
    assert result["summary"]["errors"] == 1
    (error,) = [d for d in result["diagnostics"] if d["severity"] == "error"]
    assert error["code"] == "tunec::check::fsdp_qlora_storage"
    assert error["help"] is not None and "storage = bf16" in error["help"]
    text = path.read_bytes()
    assert text[error["span"]["start"] : error["span"]["end"]] == b"uint8"
    assert error["docs"] == "docs/errors/fsdp_qlora_storage.md" and (ROOT / error["docs"]).is_file()


def test_params_override_the_files_params_like_set() -> None:
    fixture = "tests/cases/param_override.tune"
    assert tunec.check(fixture, params={"lr": 1e-4, "epochs": 3})["summary"]["errors"] == 0
    default = {n["name"]: n["key"] for n in tunec.plan(fixture)["nodes"]}
    changed = {n["name"]: n["key"] for n in tunec.plan(fixture, params={"lr": 1e-4})["nodes"]}
    by_cli = json.loads(cli("plan", "--format", "json", "--set", "lr=1e-4", fixture).stdout)
    assert changed == {n["name"]: n["key"] for n in by_cli["nodes"]}
    assert default["sft"] != changed["sft"] and default["raw"] == changed["raw"]
    mismatch = tunec.check(fixture, params={"epochs": 1.5})
    assert [d["code"].rsplit("::", 1)[1] for d in mismatch["diagnostics"]] == ["type_mismatch"]
    unknown = tunec.check(fixture, params={"learning_rat": 1e-4})
    assert [d["code"] for d in unknown["diagnostics"]] == ["tunec::resolve::unknown_param"]
    with pytest.raises(ValueError, match="not a parameter name"):
        tunec.check(fixture, params={"lr=1": 2})
    with pytest.raises(TypeError, match="give a str, int, float or bool"):
        tunec.check(fixture, params={"lr": [1e-4]})  # type: ignore[dict-item]


def test_plan_returns_the_job_graph() -> None:
    graph = tunec.plan(MEDREASON)
    assert graph == json.loads(cli("plan", "--format", "json", MEDREASON).stdout)
    assert graph["env"] == ["TUNEC_BUCKET", "TUNEC_HF_TOKEN_SECRET", "TUNEC_SAGEMAKER_ROLE"]
    jobs = [n for n in graph["nodes"] if n["execution"] == "SageMaker training job"]
    assert [n["name"] for n in jobs] == ["sft", "merged", "report"]
    assert all(n["job_name"] is not None and n["job_name"].startswith(f"medreason-{n['name']}-") for n in jobs)
    assert all(len(n["key"]) == 64 and int(n["key"], 16) >= 0 for n in graph["nodes"])


def test_a_pipeline_with_errors_has_no_plan() -> None:
    with pytest.raises(tunec.PipelineError) as caught:
        tunec.plan("tests/cases/fsdp_qlora_storage.tune")
    assert caught.value.result == tunec.check("tests/cases/fsdp_qlora_storage.tune")
    assert [d["code"] for d in caught.value.diagnostics] == ["tunec::check::fsdp_qlora_storage"]
    # The message points at `uint8`, found here in the file's text, 1-based.
    lines = (ROOT / "tests/cases/fsdp_qlora_storage.tune").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "storage = uint8" in text)
    column = lines[line - 1].index("uint8") + 1
    assert f"tests/cases/fsdp_qlora_storage.tune:{line}:{column}: tunec::check::fsdp_qlora_storage:" in str(
        caught.value
    )
    assert isinstance(caught.value, tunec.TunecError) and caught.value.returncode == 1
    assert "FSDP cannot shard 4-bit weights" in caught.value.stderr
    with pytest.raises(tunec.PipelineError, match=r"<--set nope>|tunec::resolve::unknown_param"):
        tunec.plan(MEDREASON, params={"nope": 1})


def test_usage_and_io_errors_raise_tunec_error() -> None:
    with pytest.raises(tunec.TunecError) as caught:
        tunec.check("no/such/file.tune")
    assert caught.value.returncode == 2
    assert str(caught.value).startswith("cannot read `no/such/file.tune`")
    with pytest.raises(FileNotFoundError):
        tunec.plan(MEDREASON, binary=ROOT / "no/such/tunec")


def test_binary_runs_another_build(tmp_path: Path) -> None:
    copy = tmp_path / "tunec-copy"
    shutil.copy2(tunec.find_binary(), copy)
    assert tunec.check(MEDREASON, binary=copy) == tunec.check(MEDREASON)
    assert tunec.version(binary=str(copy)) == tunec.version()


# The types against every document the binary prints ------------------------------------------------

_seen: set[str] = set()


def conforms(value: Any, hint: Any, where: str) -> None:
    """Asserts that a JSON value has the type `hint` (a TypedDict, list, dict, Literal, union, or a
    scalar), with exactly the TypedDict's keys; records which TypedDicts and branches were met."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        branches = typing.get_args(hint)
        for branch in branches:
            try:
                conforms(value, branch, where)
            except AssertionError:
                continue
            _seen.add(f"{where}:{getattr(branch, '__name__', branch)}")
            return
        raise AssertionError(f"{where}: {value!r} is none of {branches}")
    if origin is typing.Literal:
        assert value in typing.get_args(hint), f"{where}: {value!r} is not one of {typing.get_args(hint)}"
        return
    if origin is list:
        assert isinstance(value, list), f"{where}: {value!r} is not a list"
        for i, item in enumerate(value):
            conforms(item, typing.get_args(hint)[0], f"{where}[{i}]")
        return
    if origin is dict:
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        key_type, value_type = typing.get_args(hint)
        for k, v in value.items():
            conforms(k, key_type, f"{where} key")
            conforms(v, value_type, f"{where}[{k!r}]")
        return
    if typing.is_typeddict(hint):
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        fields = typing.get_type_hints(hint)
        assert set(value) == set(fields), (
            f"{where}: the document's keys {sorted(value)} are not those of {hint.__name__} {sorted(fields)}; "
            "python/tunec/_types.py must follow docs/cli.md"
        )
        _seen.add(hint.__name__)
        for name, field in fields.items():
            conforms(value[name], field, f"{where}.{name}")
        return
    if hint is type(None):
        assert value is None, f"{where}: {value!r} is not null"
    elif hint is int:
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r} is not an integer"
    elif hint is float:
        assert isinstance(value, float), f"{where}: {value!r} is not a float"
    else:
        assert isinstance(value, hint), f"{where}: {value!r} is not a {hint.__name__}"


def test_the_types_describe_every_document_of_every_example_and_fixture() -> None:
    assert len(PIPELINES) > 60, PIPELINES
    planned = 0
    for path in PIPELINES:
        result = tunec.check(path)
        conforms(result, tunec.CheckResult, f"check {path}")
        if result["summary"]["errors"] == 0:
            conforms(tunec.plan(path), tunec.PlanResult, f"plan {path}")
            planned += 1
    assert planned > 10
    every_typeddict = {name for name in tunec.__all__ if typing.is_typeddict(getattr(tunec, name))}
    assert every_typeddict <= _seen, f"never met in a document: {sorted(every_typeddict - _seen)}"
    # Both sides of the optional fields, so that `X | None` is not just `None`.
    for branch in ("estimate:Estimate", "estimate:NoneType", "help:str", "job_name:str", "job_name:NoneType"):
        assert any(seen.endswith(branch) for seen in _seen), f"no document had {branch}"


def test_the_types_check_under_mypy_strict(tmp_path: Path) -> None:
    """The module type-checks, and mypy holds a caller to the documents' keys and types."""
    for target in (["-p", "tunec"], [str(ROOT / "tests/wheel/typed_usage.py")]):
        done = subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *target],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    bad = tmp_path / "misuse.py"
    bad.write_text(
        "import tunec\n"
        "r = tunec.check('p.tune')\n"
        "errors: int = r['summary']['erors']\n"
        "name: str = r['pipeline']\n"
        "key: int = tunec.plan('p.tune')['nodes'][0]['key']\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stdout
    assert 'TypedDict "Summary" has no key "erors"' in done.stdout
    assert "misuse.py:4: error: Incompatible types in assignment" in done.stdout
    assert "misuse.py:5: error: Incompatible types in assignment" in done.stdout
