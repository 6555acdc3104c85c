"""Process-level runtime defaults: applied unless the user set them; off switch."""

from __future__ import annotations

import subprocess
import sys

from personkit.runtime import ENV_DEFAULTS, apply_defaults


def test_defaults_fill_only_unset_variables():
    env: dict[str, str] = {}
    assert apply_defaults(env) == ENV_DEFAULTS == env
    env = {"KMP_BLOCKTIME": "200", "GOMP_SPINCOUNT": "5"}
    assert apply_defaults(env) == {} and env == {"KMP_BLOCKTIME": "200", "GOMP_SPINCOUNT": "5"}


def test_a_chosen_wait_policy_keeps_gnu_openmp_spinning_as_chosen():
    """GOMP_SPINCOUNT overrides OMP_WAIT_POLICY in GNU OpenMP: never set it over a choice."""
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    applied = apply_defaults(env)
    assert "GOMP_SPINCOUNT" not in env and "GOMP_SPINCOUNT" not in applied
    assert env["KMP_BLOCKTIME"] == ENV_DEFAULTS["KMP_BLOCKTIME"] == applied["KMP_BLOCKTIME"]


def test_off_switch_changes_nothing():
    env = {"PERSONKIT_RUNTIME": "off"}
    assert apply_defaults(env) == {} and env == {"PERSONKIT_RUNTIME": "off"}


def test_cli_module_does_not_load_torch_before_the_defaults():
    code = ("import os, sys; import personkit.cli; "
            "from personkit.runtime import apply_defaults; a = apply_defaults(); "
            "print(os.environ['GOMP_SPINCOUNT'], 'torch' in sys.modules, "
            "any(k.startswith('mallopt') for k in a) or not sys.platform.startswith('linux'))")
    env = {"PATH": "", "PYTHONPATH": ":".join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [ENV_DEFAULTS["GOMP_SPINCOUNT"], "False", "True"]


def test_after_torch_the_environment_is_left_alone_and_the_library_says_so_once():
    """torch loaded first (a Python program, or ``cli.main`` in-process): OpenMP has read its
    environment, so nothing is set, and ``import personkit`` warns once what is lost."""
    code = ("import os, sys, torch, personkit; from personkit.runtime import apply_defaults; "
            "import personkit.inference; a = apply_defaults(); "
            "print('GOMP_SPINCOUNT' in os.environ, [k for k in a if not k.startswith('mallopt')])")
    env = {"PATH": "", "PYTHONPATH": ":".join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.split() == ["False", "[]"]
    assert proc.stderr.count("RuntimeDefaultsWarning") == 1
    assert "Import personkit before torch, or set GOMP_SPINCOUNT=1000" in proc.stderr


def test_a_python_program_that_imports_personkit_first_gets_the_defaults():
    """The library applies the CLI's environment defaults when it safely can: before torch
    (issue #23, item 4); the allocator stays the host program's."""
    code = ("import os, sys, personkit, torch; "
            "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('KMP_BLOCKTIME'))")
    env = {"PATH": "", "PYTHONPATH": ":".join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.split() == [ENV_DEFAULTS["GOMP_SPINCOUNT"], ENV_DEFAULTS["KMP_BLOCKTIME"]]
    assert proc.stderr == ""


def test_cpu_description_names_the_vector_isa():
    """Two machines that both call themselves "AMD EPYC" differ 2x in speed by ISA: reports
    name the ISA torch's kernels run with."""
    import torch

    from personkit.runtime import cpu_description

    text = cpu_description()
    assert text.endswith(f"{torch.backends.cpu.get_cpu_capability()})")
    assert len(text) > len(torch.backends.cpu.get_cpu_capability()) + 3  # a model name too
    from personkit.runtime import cpu_flags

    flags = cpu_flags()  # the flags that decide engine speed are named (issue #27)
    assert ("avx2" in flags) == (" avx2" in text or "(avx2" in text)
    assert ("avx512_bf16" in flags or "amx_bf16" in flags) == (" bf16" in text)
