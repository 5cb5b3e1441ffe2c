"""Property-based bad-input corpus: every invalid preset or argument gives one line on stderr, exit
code 2, no traceback and no file written."""

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelset.cli import main
from modelset.preset import DEFAULTS

TRAIN_KEYS = sorted(DEFAULTS["train"])
# Values that are wrong for every numeric or enumerated training key.
WRONG = st.one_of(
    st.integers(max_value=-1),
    st.just(0).map(lambda _: "true"),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
    .filter(
        lambda s: (
            s
            not in (
                "relu",
                "gelu",
                "tanh",
                "silu",
                "sigmoid",
                "selu",
                "adam",
                "adamw",
                "sgd",
                "default",
                "orthogonal",
                "inf",
                "nan",
                "true",
                "false",
            )
        )
    )
    .map(lambda s: f"'{s}'"),
)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _run(argv, capsys, tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)  # default outputs would land here
    try:
        code = main(argv)
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    return code, err


def _assert_rejected(code, err, tmp_path):
    assert code == 2, err
    assert err.startswith("modelset: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".toml"], list(tmp_path.rglob("*"))


@SETTINGS
@given(
    key=st.sampled_from(TRAIN_KEYS + ["seeds", "unit_size", "seed", "tasks.count", "tasks.classes_per_task"]),
    value=WRONG,
)
def test_invalid_values_are_rejected(key, value, capsys, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    if key == "momentum" and str(value).lstrip("-").isdigit():
        value = "1.5"
    code, err = _run(
        ["build", "--preset", "digits500", "--set", f"{key}={value}", "--out", str(tmp / "x.h5")], capsys, tmp
    )
    _assert_rejected(code, err, tmp)


@SETTINGS
@given(
    key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.", min_size=1, max_size=12).filter(
        lambda k: (
            k.strip(".") == k
            and ".." not in k
            and k.split(".")[-1] not in {*DEFAULTS, *DEFAULTS["train"], *DEFAULTS["tasks"], *DEFAULTS["splits"]}
        )
    )
)
def test_unknown_keys_are_rejected(key, capsys, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    code, err = _run(["build", "--preset", "digits500", "--set", f"{key}=1", "--out", str(tmp / "x.h5")], capsys, tmp)
    _assert_rejected(code, err, tmp)


@SETTINGS
@given(text=st.text(max_size=60))
def test_garbage_preset_files_are_rejected(text, capsys, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    f = tmp / "p.toml"
    f.write_text(text + "\nseeds = 0\n")  # whatever the text says, 0 seeds (or a parse error) is invalid
    code, err = _run(["build", "--preset", str(f), "--out", str(tmp / "x.h5")], capsys, tmp)
    _assert_rejected(code, err, tmp)


@SETTINGS
@given(
    argv=st.lists(
        st.sampled_from(
            [
                "build",
                "info",
                "verify",
                "presets",
                "leaderboard",
                "submit",
                "--jobs",
                "x",
                "--preset",
                "--set",
                "=",
                "--out",
                "-1",
                "--timeout",
                "--method",
            ]
        ),
        min_size=1,
        max_size=6,
    )
)
def test_random_argument_soup_never_tracebacks(argv, capsys, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("soup")
    try:
        code, err = _run(argv, capsys, tmp)
    except SystemExit as e:  # --help style exits are argparse's own, with status 0
        assert e.code == 0
        return
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert err.startswith("modelset: error: ") and err.count("\n") == 1
    assert not [p for p in tmp.rglob("*") if p.is_file()]
