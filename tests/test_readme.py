"""README's quick start stays true: CI runs its test command, and its example claim works."""
import os
import pathlib
import re

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _blocks():
    return re.findall(r"```(?:bash|python)\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_quick_start_is_two_commands_and_ci_runs_the_test_one():
    bash = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert [b.strip() for b in bash[:2]] == ['pip install . && guidance-verify run',
                                            'pip install ".[test,distributed]" && python -m pytest -q']
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install ".[test,distributed]"' in ci and "\npython -m pytest -q\n" in ci


def test_readme_python_examples_run(tmp_path):
    """Every python block executes; the claim example registers into a private registry."""
    import importlib

    claim_mod = importlib.import_module("numerics.checks.claim")
    from numerics.checks.runner import run_claim

    saved = dict(claim_mod.REGISTRY)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for block in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
            ns: dict = {}
            exec(compile(block, "README.md", "exec"), ns)
        new = [c for k, c in claim_mod.REGISTRY.items() if k not in saved]
        assert [c.id for c in new] == ["mypaper.two_atom_posterior"]
        res = run_claim(new[0])
        assert res.verdict == "holds" and res.control == "flagged"
        assert list(res.plot.panels) == ["err"] and res.controls[0].plot.curves  # its figure
    finally:
        os.chdir(cwd)
        claim_mod.REGISTRY.clear()
        claim_mod.REGISTRY.update(saved)


def test_sampler_table_is_generated():
    """README's sampler table is exactly what theory.derive renders from the derivations."""
    from theory.derive import sampler_table_markdown

    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- samplers:begin -->\n")[1].split("\n<!-- samplers:end -->")[0]
    assert block == sampler_table_markdown()
