"""The on-disk reference cache (numerics.references.disk_cache) and the geometry oracle's use of it: a hit is what
recomputing gives, any changed input or source misses, a corrupt entry is recomputed, concurrent writers leave a
valid entry. Every test points the cache at its own temporary directory (tests/conftest.py turns it off)."""
import multiprocessing as mpr
import os

import numpy as np
import pytest

from numerics.papers.support import geometry_oracle as G
from numerics.references import disk_cache as DC


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(DC.ENV, str(tmp_path))
    return tmp_path


def _counting(value):
    calls = []

    def compute():
        calls.append(1)
        return {k: np.array(v, dtype=np.float64) for k, v in value.items()}
    return compute, calls


def _src(tmp_path, text="x = 1\n"):
    f = tmp_path / "src_module.py"
    f.write_text(text)
    return f


def test_hit_returns_the_stored_arrays_bit_for_bit(cache):
    src = DC.source_digest(_src(cache))
    vals = {"a": [0.1, -1e-300, 5e-324, np.pi], "b": [[1.0, 2.0], [3.0, 4.0]]}
    compute, calls = _counting(vals)
    first, hit1 = DC.cached_arrays("ns", (0.1, (1, 2), "x"), compute, src)
    second, hit2 = DC.cached_arrays("ns", (0.1, (1, 2), "x"), compute, src)
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    for k in vals:
        assert second[k].dtype == np.float64 and second[k].tobytes() == first[k].tobytes()


@pytest.mark.parametrize("inputs", [
    (0.1 + 2 ** -56, (1, 2), "x"),          # the float's last bit
    (0.1, (1, 3), "x"),
    (0.1, (1, 2), "y"),
    (0.1, (1.0, 2), "x"),                   # an int is not a float
    (0.1, [1, 2, 3], "x"),
])
def test_a_changed_input_misses(cache, inputs):
    src = DC.source_digest(_src(cache))
    compute, calls = _counting({"a": [1.0]})
    DC.cached_arrays("ns", (0.1, (1, 2), "x"), compute, src)
    _, hit = DC.cached_arrays("ns", inputs, compute, src)
    assert not hit and len(calls) == 2
    _, hit = DC.cached_arrays("other", (0.1, (1, 2), "x"), compute, src)
    assert not hit


def test_an_array_input_is_keyed_by_its_bytes(cache):
    src = DC.source_digest(_src(cache))
    compute, calls = _counting({"a": [1.0]})
    v = np.array([[0.5, 1.0], [2.0, 3.0]])
    DC.cached_arrays("ns", (v,), compute, src)
    assert DC.cached_arrays("ns", (v.copy(),), compute, src)[1]
    w = v.copy()
    w[1, 1] = np.nextafter(3.0, 4.0)
    assert not DC.cached_arrays("ns", (w,), compute, src)[1]
    assert not DC.cached_arrays("ns", (v.T,), compute, src)[1]
    assert not DC.cached_arrays("ns", (v.astype(np.float32),), compute, src)[1]


def test_a_changed_source_misses(cache):
    f = _src(cache)
    compute, calls = _counting({"a": [1.0]})
    DC.cached_arrays("ns", (1.0,), compute, DC.source_digest(f))
    f.write_text("x = 2\n")
    os.utime(f, ns=(1, 1))               # even with an older time stamp: the digest reads the bytes
    _, hit = DC.cached_arrays("ns", (1.0,), compute, DC.source_digest(f))
    assert not hit and len(calls) == 2


@pytest.mark.parametrize("damage", [b"", b"not an npz", None])
def test_a_corrupt_entry_is_recomputed_and_replaced(cache, damage):
    src = DC.source_digest(_src(cache))
    compute, calls = _counting({"a": [1.0, 2.0]})
    DC.cached_arrays("ns", (1.0,), compute, src)
    (entry,) = cache.glob("*.npz")
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2] if damage is None else damage)
    value, hit = DC.cached_arrays("ns", (1.0,), compute, src)
    assert not hit and len(calls) == 2 and value["a"].tolist() == [1.0, 2.0]
    assert DC.cached_arrays("ns", (1.0,), compute, src)[1]


def test_an_entry_under_another_key_or_with_other_names_is_not_served(cache):
    src = DC.source_digest(_src(cache))
    compute, calls = _counting({"a": [1.0]})
    DC.cached_arrays("ns", (1.0,), compute, src)
    DC.cached_arrays("ns", (2.0,), compute, src)
    e1, e2 = (cache / f"{DC.entry_key('ns', (x,), src)}.npz" for x in (1.0, 2.0))
    e1.write_bytes(e2.read_bytes())                  # a file renamed by hand: its stored key disagrees
    assert not DC.cached_arrays("ns", (1.0,), compute, src)[1]
    assert not DC.cached_arrays("ns", (1.0,), compute, src, names=("b",))[1]


def test_off_computes_and_writes_nothing(cache, monkeypatch):
    monkeypatch.setenv(DC.ENV, "off")
    src = DC.source_digest(_src(cache))
    compute, calls = _counting({"a": [1.0]})
    DC.cached_arrays("ns", (1.0,), compute, src)
    assert not DC.cached_arrays("ns", (1.0,), compute, src)[1]
    assert len(calls) == 2 and not list(cache.glob("*.npz"))


def test_default_location_is_the_user_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(DC.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if os.name == "posix" and not os.uname().sysname == "Darwin":
        assert DC.cache_dir() == tmp_path / "guidance-verify" / "references"


def test_bad_input_names_the_argument(cache):
    with pytest.raises(ValueError, match="inputs"):
        DC.entry_key("ns", (object(),), "s")
    with pytest.raises(ValueError, match="paths"):
        DC.source_digest(cache / "missing.py")
    with pytest.raises(ValueError, match="compute"):
        DC.cached_arrays("ns", (1.0,), lambda: {"a": np.array(["x"])}, "s")


def _writer(root, i, q):
    os.environ[DC.ENV] = root
    src = DC.source_digest(os.path.join(root, "src_module.py"))
    big = np.arange(200_000, dtype=np.float64) + 0.5
    for _ in range(5):
        value, _ = DC.cached_arrays("ns", (1.0,), lambda: {"a": big}, src)
        assert value["a"].tobytes() == big.tobytes()
    q.put(i)


def test_two_processes_writing_at_once_leave_a_valid_entry(cache):
    _src(cache)
    ctx = mpr.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(cache), i, q)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(q.get(timeout=5) for _ in procs) == [0, 1]
    assert len(list(cache.glob("*.npz"))) == 1 and not list(cache.glob(".*.tmp"))
    value, hit = DC.cached_arrays("ns", (1.0,), lambda: pytest.fail("recomputed"),
                                  DC.source_digest(cache / "src_module.py"))
    assert hit and value["a"].tobytes() == (np.arange(200_000, dtype=np.float64) + 0.5).tobytes()


def test_oracle_values_from_the_cache_equal_a_recomputation(cache, monkeypatch):
    specs, w = G.AUTHORS_SPECS["two_crescents"]
    v = np.array([[0.9, 2.0], [3.0, 2.0]]) * np.exp(-0.1)
    fresh = G.oracle_values(specs, w, v, 0.1)
    o1, hit1 = G.cached_oracle_values(specs, w, v, 0.1)
    o2, hit2 = G.cached_oracle_values(specs, w, v, 0.1)
    assert (hit1, hit2) == (False, True)
    for f in G._ORACLE_FIELDS:
        assert getattr(o2, f).tobytes() == getattr(fresh, f).tobytes() == getattr(o1, f).tobytes()
    # another time, point, weight, region or precision is another entry, computed afresh
    assert not G.cached_oracle_values(specs, w, v, 0.3)[1]
    assert not G.cached_oracle_values(specs, w, v[:1], 0.1)[1]
    assert not G.cached_oracle_values(specs, (0.25, 0.75), v, 0.1)[1]
    bitten = ((*specs[0][:5], -specs[0][5]), specs[1])
    o3, hit3 = G.cached_oracle_values(bitten, w, v, 0.1)
    assert not hit3 and not np.array_equal(o3.log_density, fresh.log_density)
    assert not G.cached_oracle_values(specs, w, v, 0.1, dps=30)[1]
    # a planted change of the oracle's code (its source digest) is a miss, not the stored values
    monkeypatch.setattr(G.disk_cache, "source_digest", lambda *p: "edited")
    assert not G.cached_oracle_values(specs, w, v, 0.1)[1]


def test_brute_force_from_the_cache_equals_a_recomputation(cache):
    spec = ("crescent", 2.0, 2.0, 1.5, 1.0, 0.8)
    x = np.array([[0.0, 0.0], [2.0, 2.0], [3.6, 2.1]])
    d0, b0 = G.brute_force_distance(spec, x, 200)
    d1, b1, hit1 = G.cached_brute_force_distance(spec, x, 200)
    d2, b2, hit2 = G.cached_brute_force_distance(spec, x, 200)
    assert (hit1, hit2) == (False, True)
    assert d2.tobytes() == d1.tobytes() == d0.tobytes() and b2.tobytes() == b1.tobytes() == b0.tobytes()
    assert not G.cached_brute_force_distance(spec, x, 300)[2]
    assert not G.cached_brute_force_distance(spec, x + 1e-9, 200)[2]


@pytest.mark.parametrize("module", ["validate", "constants"])
def test_an_edit_of_a_package_module_entering_the_oracle_misses(cache, monkeypatch, module):
    """numerics.validate normalises the oracle's inputs and numerics.constants gives the rounding unit of its
    error fields: an edit of either file (seen here as different bytes of that one file) is a miss for both
    stored references, while the same bytes are a hit."""
    import numerics
    specs, w = G.AUTHORS_SPECS["two_crescents"]
    v = np.array([[0.3, 0.4]])
    spec, x = specs[0], np.array([[0.0, 0.0]])
    assert not G.cached_oracle_values(specs, w, v, 0.2)[1]
    assert not G.cached_brute_force_distance(spec, x, 50)[2]
    assert G.cached_oracle_values(specs, w, v, 0.2)[1] and G.cached_brute_force_distance(spec, x, 50)[2]
    target = os.path.realpath(getattr(numerics, module).__file__)
    real = DC.source_digest

    def edited(*paths):
        return real(*paths) + ("-edited" if target in map(os.path.realpath, map(str, paths)) else "")
    monkeypatch.setattr(G.disk_cache, "source_digest", edited)
    assert not G.cached_oracle_values(specs, w, v, 0.2)[1]
    assert not G.cached_brute_force_distance(spec, x, 50)[2]


def test_claim_body_reads_the_cache_on_a_second_run_with_the_same_values(cache):
    """The claim body twice on a tiny profile: the second run reads every oracle value and brute-force distance
    from the cache (said in the measurements' extra) and reports the same values; a control run, whose bug is on
    the package side, is served the same oracle (its inputs are the stated run's)."""
    from numerics.checks.claim import Context

    params = {"mixtures": ["two_crescents"], "ts": [1.0], "dps": 20, "grid_step": 2.0, "boundary_n": 200}
    ctl = tuple(G.GEOMETRY_CONTROLS)
    runs = [G.geometry_measurements(Context("support.test_geometry", dict(params), "quick", 0, c, ctl))
            for c in (None, None, "bite_flipped")]
    first, second, bug = ({m.name: m for m in r} for r in runs)
    q = "two_crescents: log density, max over points and t of |pkg - oracle| / tol"
    assert first[q].extra["oracle_ts_from_disk_cache"] == []
    assert second[q].extra["oracle_ts_from_disk_cache"] == [1.0] == bug[q].extra["oracle_ts_from_disk_cache"]
    u = "two_crescents: distance to the union, max |pkg - brute force| / tol"
    key = "brute_force_regions_from_disk_cache"
    assert (first[u].extra[key], second[u].extra[key]) == (0, 2)
    assert all(first[k].measured == second[k].measured for k in first)
    assert bug[q].measured > 1.0


def test_references_from_the_pool_equal_the_serial_oracle_and_are_kept_for_the_next_run(monkeypatch):
    """With the disk cache off: the geometry oracle's entries computed by the process pool (two at once) equal
    oracle_values and brute_force_distance computed here, bit for bit; asked again (as a control run asks),
    they come from this process's memo without a second computation."""
    monkeypatch.setenv(DC.ENV, "off")
    specs, w = G.AUTHORS_SPECS["two_crescents"]
    v = np.array([[0.9, 2.0], [2.6, 2.2]]) * np.exp(-0.2)
    x = np.array([[0.0, 0.0], [2.0, 2.0], [3.6, 2.1]])
    requests = [("oracle", (specs, w, v, 0.2, None, 20)), ("brute", (specs[0], x, 120))]
    G._MEMO.clear()
    calls, real = [], G.process_map

    def counting(fn, jobs, workers=None):
        calls.append(len(jobs))
        return real(fn, jobs, 2)
    monkeypatch.setattr(G, "process_map", counting)
    (o, hit_o), (d, hit_d) = G._references(requests)
    fresh = G.oracle_values(specs, w, v, 0.2, dps=20)
    d0, b0 = G.brute_force_distance(specs[0], x, 120)
    assert not hit_o and not hit_d and calls == [2]
    assert all(o[f].tobytes() == getattr(fresh, f).tobytes() for f in G._ORACLE_FIELDS)
    assert d["distance"].tobytes() == d0.tobytes() and d["bound"].tobytes() == b0.tobytes()
    (o2, _), (d2, _) = G._references(requests)
    assert calls == [2, 0]
    assert all(o2[f] is o[f] for f in G._ORACLE_FIELDS) and d2["distance"] is d["distance"]
