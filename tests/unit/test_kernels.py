"""The compiled kernels compute what the NumPy forms compute.

``core/tracking/kernels.py`` runs the tracker's prediction, gating and update, the RK4 steps
and the ground-crossing search in numba. Each is checked here against the NumPy form it
replaced (kept as the reference): without drag the RK4 step is the same operation for
operation, so equal to the bit; elsewhere libm's transcendental functions and the order of
the small matrix products differ from NumPy's in the last bits, so values agree within 1e-9
relative and decisions (which rows come down, which pairs gate) exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.tracking import earth
from gsomia.core.tracking.associator import mahalanobis
from gsomia.core.tracking.impact import Corridor, ground_crossing, ground_crossing_numpy
from gsomia.core.tracking.predictor import BallisticPredictor, rk4_step, rk4_step_numpy
from gsomia.core.tracking.updater import ExtendedKalmanUpdater, measure

seeds = st.integers(0, 2**32 - 1)


def _states(rng: np.random.Generator, k: int, low_m: float = 1_000.0) -> np.ndarray:
    lat = rng.uniform(0.4, 0.8, k)
    lon = rng.uniform(2.0, 2.6, k)
    h = rng.uniform(low_m, 1.5e6, k)
    v = rng.normal(0.0, 2_500.0, (k, 3))
    return np.hstack([earth.geodetic_to_ecef(lat, lon, h), v])


def _covariances(rng: np.random.Generator, k: int) -> np.ndarray:
    a = rng.normal(0.0, 1.0, (k, 6, 6)) * np.array([500.0] * 3 + [20.0] * 3)[None, :, None]
    covariances: np.ndarray = a @ a.transpose(0, 2, 1) + np.eye(6)
    return covariances


def _close(a: np.ndarray, b: np.ndarray, rel: float = 1e-9) -> bool:
    return bool(np.all(np.abs(a - b) <= rel * max(float(np.max(np.abs(b))), 1e-300)))


@settings(max_examples=40, deadline=None)
@given(seeds, st.integers(1, 40), st.floats(-30.0, 30.0), st.sampled_from([0.0, 1 / 3000.0]))
def test_compiled_rk4_step_is_numpys(seed: int, k: int, h: float, inv_beta: float) -> None:
    rng = np.random.default_rng(seed)
    x = _states(rng, k)
    steps = np.full(k, h)
    got, ref = rk4_step(x, steps, inv_beta), rk4_step_numpy(x, steps, inv_beta)
    if inv_beta == 0.0:
        assert np.array_equal(got, ref)     # +, *, / and sqrt only: the same to the bit
    else:
        assert _close(got, ref, 1e-12)


@settings(max_examples=25, deadline=None)
@given(seeds, st.integers(1, 30), st.sampled_from([0.0, 1 / 3000.0]))
def test_compiled_ground_crossing_is_numpys(seed: int, k: int, inv_beta: float) -> None:
    rng = np.random.default_rng(seed)
    x = _states(rng, k, low_m=-2_000.0)          # some rows start below ground
    t0 = rng.uniform(0.0, 300.0, k)
    direction = np.where(rng.random(k) < 0.5, 1.0, -1.0)
    t1, r1, ok1 = ground_crossing(x, t0, direction, max_time_s=3600.0, inv_beta=inv_beta)
    t2, r2, ok2 = ground_crossing_numpy(x, t0, direction, max_time_s=3600.0, inv_beta=inv_beta)
    assert np.array_equal(ok1, ok2)
    assert np.allclose(t1[ok1], t2[ok2], rtol=0.0, atol=1e-6)        # seconds
    assert np.allclose(r1[ok1], r2[ok2], rtol=0.0, atol=1e-3)        # metres
    assert np.isnan(t1[~ok1]).all()


@settings(max_examples=30, deadline=None)
@given(seeds, st.integers(1, 6), st.booleans())
def test_compiled_prediction_is_numpys(seed: int, k: int, drag: bool) -> None:
    rng = np.random.default_rng(seed)
    predictor = (BallisticPredictor(ballistic_coefficient=4_000.0, boost_ceiling_m=300_000.0)
                 if drag else BallisticPredictor())
    x, P = _states(rng, k), _covariances(rng, k)
    dt = rng.uniform(-5.0, 35.0, k)
    q_extra = rng.uniform(0.0, 3_000.0, k)
    for extra in (None, q_extra):
        xa, Pa = predictor.predict(x, P, dt, extra)
        xb, Pb = predictor.predict_numpy(x, P, dt, extra)
        assert _close(xa, xb, 1e-12)
        for i in range(k):
            assert _close(Pa[i], Pb[i])
        assert np.array_equal(Pa, Pa.transpose(0, 2, 1))


@settings(max_examples=30, deadline=None)
@given(seeds, st.integers(1, 6), st.integers(1, 5), st.sampled_from(["rae", "los"]))
def test_compiled_gating_and_update_are_numpys(seed: int, k: int, m: int, kind: str) -> None:
    rng = np.random.default_rng(seed)
    x, P = _states(rng, k, low_m=50_000.0), _covariances(rng, k)
    site = earth.geodetic_to_ecef(0.7, 2.3, 0.0)
    basis = earth.enu_basis(0.7, 2.3)
    # NumPy runs the per-track form when every track has its own copy of the site
    sites, bases = np.repeat(site[None], k, 0), np.repeat(basis[None], k, 0)
    z_pred, _ = measure(x, site, basis, kind)  # type: ignore[arg-type]
    dim = z_pred.shape[1]
    noise = np.stack([np.diag(rng.uniform(1e-8, 1e2, dim)) for _ in range(max(k, m))])
    z = z_pred[rng.integers(0, k, m)] + rng.normal(0.0, 1e-3, (m, dim))
    d2, logdet = mahalanobis(x, P, z, noise[:m], site, basis, kind)  # type: ignore[arg-type]
    d2_ref, logdet_ref = mahalanobis(x, P, z, noise[:m], sites, bases,
                                     kind)  # type: ignore[arg-type]
    assert _close(d2, d2_ref, 1e-8) and _close(logdet, logdet_ref, 1e-12)
    updater = ExtendedKalmanUpdater()
    zk = z_pred + rng.normal(0.0, 1e-3, z_pred.shape)
    got = updater.update_nis(x, P, zk, noise[:k], site, basis, kind)  # type: ignore[arg-type]
    ref = updater.update_nis(x, P, zk, noise[:k], sites, bases, kind)  # type: ignore[arg-type]
    assert _close(got[0], ref[0], 1e-12)
    for i in range(k):
        assert _close(got[1][i], ref[1][i], 1e-8)
    assert _close(got[2], ref[2], 1e-8)


@settings(max_examples=60, deadline=None)
@given(seeds, st.integers(1, 60), st.integers(0, 800), st.sampled_from([0.0, 20_000.0]))
def test_corridor_sections_hit_every_pair_the_full_test_finds(seed: int, k: int, n: int,
                                                              buffer_m: float) -> None:
    """The band of latitudes only skips pairs that cannot be inside: the answer is the
    all-pairs test's, pair for pair (a corridor that missed an island would not alert it)."""
    rng = np.random.default_rng(seed)
    lat = 35.0 + np.cumsum(rng.normal(0.0, 0.3, k))
    lon = 130.0 + np.cumsum(rng.normal(0.2, 0.3, k))
    a = rng.normal(0.0, 1.0, (k, 2, 2)) * rng.uniform(0.0, 4e4)
    c = Corridor(0.99, 0.0, np.arange(k, dtype=float), lat, lon, a @ a.transpose(0, 2, 1),
                 buffer_m)
    plat = rng.uniform(lat.min() - 1.0, lat.max() + 1.0, n)
    plon = rng.uniform(lon.min() - 1.0, lon.max() + 1.0, n)
    assert np.array_equal(c.sections_hit(plat, plon), _all_pairs(c, plat, plon))


@settings(max_examples=60, deadline=None)
@given(seeds, st.integers(1, 40), st.integers(0, 400), st.sampled_from([179.5, -179.5, 0.0]),
       st.sampled_from([0.0, 60.0, 88.0]), st.booleans())
def test_corridor_sections_hit_where_longitudes_wrap(seed: int, k: int, n: int, lon0: float,
                                                     lat0: float, unwrapped: bool) -> None:
    """The same across the antimeridian, near the pole, with corridors hundreds of km wide
    and points given past 180 degrees: the longitude window that skips far points must not
    skip one that lies within an ellipse the short way round."""
    rng = np.random.default_rng(seed)
    lat = np.clip(lat0 + np.cumsum(rng.normal(0.0, 0.5, k)), -89.0, 89.0)
    lon = (lon0 + np.cumsum(rng.normal(0.0, 0.5, k)) + 180.0) % 360.0 - 180.0
    a = rng.normal(0.0, 1.0, (k, 2, 2)) * rng.uniform(0.0, 3e5)
    c = Corridor(0.99, 0.0, np.arange(k, dtype=float), lat, lon, a @ a.transpose(0, 2, 1),
                 3_000.0)
    plat = rng.uniform(lat.min() - 4.0, lat.max() + 4.0, n)
    plon = lon0 + rng.uniform(-8.0, 8.0, n)
    if not unwrapped:
        plon = (plon + 180.0) % 360.0 - 180.0
    assert np.array_equal(c.sections_hit(plat, plon), _all_pairs(c, plat, plon))


def test_a_kernel_lets_other_threads_run_while_it_runs() -> None:
    """The warning centre's kernels run beside the node's receive and HTTP threads: they
    release the GIL, so another thread makes progress in the middle of a long one."""
    import threading
    import time

    n, k = 4_000, 3_000
    rng = np.random.default_rng(0)
    plat, plon = rng.uniform(35.0, 36.0, n), rng.uniform(130.0, 131.0, n)
    lat, lon = np.full(k, 35.5), np.full(k, 130.5)
    c = Corridor(0.99, 0.0, np.arange(k, dtype=float), lat, lon,
                 np.repeat(np.diag([4e10, 4e10])[None], k, 0), 0.0)   # 200 km: every pair
    c.sections_hit(plat[:10], plon[:10])   # compiled or loaded before it is timed
    span: list[float] = []

    def long_kernel() -> None:
        span.append(time.perf_counter())
        assert c.sections_hit(plat, plon).all()
        span.append(time.perf_counter())

    ticks: list[float] = []
    worker = threading.Thread(target=long_kernel)
    worker.start()
    while worker.is_alive():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    worker.join()
    start, end = span
    assert end - start > 0.05, "too short a kernel to tell"
    inside = [t for t in ticks if start + 0.2 * (end - start) < t < end - 0.2 * (end - start)]
    assert inside, f"no tick of another thread in {end - start:.3f} s of kernel"


def _all_pairs(c: Corridor, plat: np.ndarray, plon: np.ndarray) -> np.ndarray:
    """Every point against every section, in NumPy: what the compiled test must answer."""
    lat, lon = c.lat_deg, c.lon_deg
    axes, v = c.semi_axes_m()
    north = np.radians(plat[:, None] - lat[None, :]) * earth.R_MEAN
    dlon = (plon[:, None] - lon[None, :] + 180.0) % 360.0 - 180.0
    east = np.radians(dlon) * earth.R_MEAN * np.cos(np.radians(lat))[None, :]
    q0 = (east * v[None, :, 0, 0] + north * v[None, :, 1, 0]) / axes[None, :, 0]
    q1 = (east * v[None, :, 0, 1] + north * v[None, :, 1, 1]) / axes[None, :, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(q0 * q0 + q1 * q1 <= 1.0)


def test_the_command_line_and_the_node_start_without_numba() -> None:
    """numba takes a second to import and scipy.spatial half of one: only processes that
    track or test regions load them, not every node serving its API."""
    code = ("import sys, gsomia.shell.cli, gsomia.shell.node, gsomia.core.warning, "
            "gsomia.core.node_centre, gsomia.core.scenario, gsomia.shell.api\n"
            "assert 'numba' not in sys.modules, 'numba imported'\n"
            "assert 'scipy.spatial' not in sys.modules, 'scipy.spatial imported'\n"
            "from gsomia.core.tracking.predictor import rk4_step\n"
            "import numpy as np\n"
            "rk4_step(np.array([[7e6, 0, 0, 0, 7e3, 0]]), np.array([1.0]))\n"
            "assert 'numba' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@settings(max_examples=30, deadline=None)
@given(seeds, st.integers(1, 20))
def test_compiled_jacobi_energy_is_numpys(seed: int, k: int) -> None:
    from gsomia.core.tracking import kernels
    from gsomia.core.tracking.predictor import jacobi_energy

    x = _states(np.random.default_rng(seed), k)
    (e1, g1), (e2, g2) = kernels.jacobi_energy(x), jacobi_energy(x)
    assert _close(e1, e2, 1e-13) and _close(g1, g2, 1e-13)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 215), st.floats(0.5, 1.5), st.floats(5.0, 80.0), st.floats(0.0, 360.0))
def test_compiled_flight_is_numpys(launch: int, energy: float, pitch_deg: float,
                                   azimuth_deg: float) -> None:
    """The trajectory model's integrator (boost, pitch-over, drag, lift, staging events):
    the same number of steps, the same impact step, positions within a micrometre."""
    from gsomia.core.tracking import trajectory
    from gsomia.shell.scenarios import fittable_launches

    req = fittable_launches()[launch].flight_request()
    lat, lon = np.radians([req.lat_deg]), np.radians([req.lon_deg])
    guess = trajectory._initial_guess(req, req.profile)
    p = trajectory._batch(lat, lon, np.radians([azimuth_deg]), np.array([guess[0] * energy]),
                          np.radians([pitch_deg]), [req.profile])
    r0 = earth.geodetic_to_ecef(lat, lon, np.zeros(1)).T
    got = trajectory._integrate(p, r0, np.array([guess[2]]))
    ref = trajectory._integrate_numpy(p, r0, np.array([guess[2]]))
    assert got.times.shape == ref.times.shape
    assert np.array_equal(got.impact, ref.impact)
    assert np.allclose(got.times, ref.times, rtol=1e-12, atol=0.0)
    assert np.allclose(got.states, ref.states, rtol=0.0, atol=1e-6)


def test_the_kernels_cache_where_numba_may_write_it() -> None:
    """Each kernel's machine code is cached beside the source (the package's own folder),
    or where the user said (``NUMBA_CACHE_DIR``) or the user's cache folder: nowhere else."""
    from numba.misc.appdirs import AppDirs

    from gsomia.core.tracking import kernels

    allowed = [Path(kernels.__file__).parent / "__pycache__",
               # numba's vendored appdirs carries no annotations
               Path(AppDirs(appname="numba", appauthor=False).user_cache_dir)]  # type: ignore[no-untyped-call]
    if os.environ.get("NUMBA_CACHE_DIR"):
        allowed.append(Path(os.environ["NUMBA_CACHE_DIR"]))
    compiled = {name: f for name, f in vars(kernels).items()
                if hasattr(f, "_cache") and hasattr(f, "py_func")}
    assert {"predict", "sections_hit", "fly", "update_both"} <= set(compiled)
    for name, f in compiled.items():
        path = f._cache.cache_path
        assert path is not None, f"{name} is not cached"
        assert any(Path(path).resolve().is_relative_to(a.resolve()) for a in allowed), \
            (name, path)


def test_the_kernels_load_where_no_folder_takes_their_cache(tmp_path: Path) -> None:
    """A package installed read-only, run where the user's cache folder cannot be made:
    numba refused to decorate a kernel with ``cache=True``, importing the kernels raised,
    and a node's warning centre took every report as unusable. They compile in memory
    there, and compute."""
    import shutil

    import gsomia

    src = tmp_path / "site"
    shutil.copytree(Path(gsomia.__file__).parent, src / "gsomia",
                    ignore=shutil.ignore_patterns("__pycache__", "data"))
    # Folders that cannot be made, even by root: each lies under a regular file.
    (src / "gsomia" / "core" / "tracking" / "__pycache__").write_text("not a folder")
    (tmp_path / "home").write_text("not a folder")
    code = ("import sys\n"
            "from gsomia.core.tracking import kernels\n"
            "assert kernels.__file__.startswith(sys.argv[1]), kernels.__file__\n"
            "assert kernels.rk4_step._cache.cache_path is None\n"
            "import numpy as np\n"
            "s = kernels.rk4_step(np.array([[7e6, 0, 0, 0, 7e3, 0]]), np.array([1.0]), 0.0)\n"
            "assert s.shape == (1, 6) and 6e6 < s[0, 0] < 8e6, s\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(src), HOME=str(tmp_path / "home" / "x"),
               XDG_CACHE_HOME=str(tmp_path / "home" / "cache"), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-c", code, str(src)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.rglob("*.nbi")), "a cache was written"
