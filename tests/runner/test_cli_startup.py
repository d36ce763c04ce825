"""The command line answers --help and list without importing torch (what made them take seconds)."""

import subprocess
import sys

import pytest

_PROBE = (
    "import sys\n"
    "from optprobe.cli import main\n"
    "try:\n"
    "    main({argv!r})\n"
    "except SystemExit:\n"
    "    pass\n"
    "heavy = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.distributed'))\n"
    "print('HEAVY', heavy)\n"
)


QUICK_COMMANDS = [["--help"], ["--version"], ["list"], ["run", "--help"], ["sweep", "--help"]]


@pytest.mark.parametrize("argv", QUICK_COMMANDS)
def test_quick_commands_do_not_import_torch(argv):
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(argv=argv)], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "HEAVY []"


def test_import_optprobe_is_lazy_but_the_public_names_work():
    code = (
        "import sys, optprobe\n"
        "assert 'torch' not in sys.modules\n"
        "assert optprobe.Probe.__name__ == 'Probe' and callable(optprobe.read_table)\n"
        "assert 'torch' in sys.modules\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "ok"


def test_version_prints_the_package_version(capsys):
    from optprobe import __version__
    from optprobe.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"optprobe {__version__}"
