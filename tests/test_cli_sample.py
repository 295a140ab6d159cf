"""``guidance-verify sample`` writes samples and a plot; bad arguments exit 2 with one line."""
import numpy as np
import pytest

from numerics.builtin_targets import BUILTIN_TARGETS, get_target
from numerics.cli import main


@pytest.mark.parametrize("target", sorted(BUILTIN_TARGETS))
def test_sample_writes_files(tmp_path, target):
    out = tmp_path / target
    assert main(["sample", "--target", target, "--method", "ddpm", "--n", "64", "--guidance", "2",
                 "--label", "1", "--out", str(out)]) == 0
    xs = np.load(out / "samples.npy")
    assert xs.shape == (64, 2) and np.all(np.isfinite(xs))
    assert (out / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_guidance_moves_samples_away_from_the_other_class(tmp_path):
    """two_class: with w = 5 toward class 1, the mean moves further from class 0's mean than with w = 1."""
    means = {}
    for w in ("1", "5"):
        main(["sample", "--target", "two_class", "--n", "400", "--guidance", w, "--label", "1",
              "--out", str(tmp_path / w)])
        means[w] = np.load(tmp_path / w / "samples.npy").mean(axis=0)
    c0 = get_target("two_class").means[0]
    assert np.linalg.norm(means["5"] - c0) > np.linalg.norm(means["1"] - c0) + 0.2


def test_bad_label_exits_2(tmp_path, capsys):
    assert main(["sample", "--target", "two_class", "--label", "7", "--guidance", "2", "--out", str(tmp_path)]) == 2
    assert "label" in capsys.readouterr().err
