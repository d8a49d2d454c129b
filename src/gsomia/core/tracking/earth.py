"""WGS-84 Earth: frames, gravity with J2, and sensor-relative geometry, vectorised.

Everything works on arrays whose last axis holds the three coordinates, so one call serves a
single point or a whole salvo. Angles are radians unless a name says ``_deg``; lengths metres.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

A = 6_378_137.0                 # semi-major axis (m)
F = 1.0 / 298.257_223_563       # flattening
B = A * (1.0 - F)               # semi-minor axis (m)
E2 = F * (2.0 - F)              # first eccentricity squared
EP2 = E2 / (1.0 - E2)           # second eccentricity squared
GM = 3.986_004_418e14           # gravitational parameter (m^3/s^2)
J2 = 1.082_626_68e-3            # second zonal harmonic
OMEGA = 7.292_115e-5            # rotation rate (rad/s)
OMEGA_VEC = np.array([0.0, 0.0, OMEGA])
R_MEAN = 6_371_008.8            # mean radius, for great-circle distances (m)


def geodetic_to_ecef(lat: Array | float, lon: Array | float, h: Array | float) -> Array:
    """Geodetic latitude, longitude (rad) and ellipsoidal height (m) to ECEF (m)."""
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    h = np.asarray(h, dtype=float)
    sl, cl = np.sin(lat), np.cos(lat)
    n = A / np.sqrt(1.0 - E2 * sl * sl)
    return np.stack(
        [(n + h) * cl * np.cos(lon), (n + h) * cl * np.sin(lon), (n * (1.0 - E2) + h) * sl],
        axis=-1,
    )


def ecef_to_geodetic(r: Array) -> tuple[Array, Array, Array]:
    """ECEF (m) to geodetic latitude, longitude (rad) and height (m); Bowring's method.

    Two Bowring iterations give sub-millimetre accuracy from the surface to GEO.
    """
    r = np.asarray(r, dtype=float)
    x, y, z = r[..., 0], r[..., 1], r[..., 2]
    lon = np.arctan2(y, x)
    p = np.hypot(x, y)
    beta = np.arctan2(z * A, p * B)
    for _ in range(2):
        sb, cb = np.sin(beta), np.cos(beta)
        lat = np.arctan2(z + EP2 * B * sb**3, p - E2 * A * cb**3)
        beta = np.arctan2((1.0 - F) * np.sin(lat), np.cos(lat))
    sl, cl = np.sin(lat), np.cos(lat)
    n = A / np.sqrt(1.0 - E2 * sl * sl)
    # Near the poles p/cos(lat) is ill-conditioned; use the z form there.
    h = np.where(np.abs(cl) > 1e-3, p / np.where(cl == 0, 1.0, cl) - n, z / sl - n * (1.0 - E2))
    return lat, lon, h


def enu_basis(lat: Array | float, lon: Array | float) -> Array:
    """Rows east, north, up (unit ECEF vectors) at the given geodetic position: shape (...,3,3)."""
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    sl, cl, so, co = np.sin(lat), np.cos(lat), np.sin(lon), np.cos(lon)
    zero = np.zeros_like(sl)
    east = np.stack([-so, co, zero], axis=-1)
    north = np.stack([-sl * co, -sl * so, cl], axis=-1)
    up = np.stack([cl * co, cl * so, sl], axis=-1)
    return np.stack([east, north, up], axis=-2)


def gravity(r: Array) -> Array:
    """Gravitational acceleration with J2 at ECEF positions r (m): (...,3) m/s^2.

    Inertial gravity only; the rotating-frame terms are in :func:`acceleration_ecef`.
    """
    r = np.asarray(r, dtype=float)
    x, y, z = r[..., 0], r[..., 1], r[..., 2]
    rr2 = x * x + y * y + z * z
    rr = np.sqrt(rr2)
    k = -GM / (rr2 * rr)
    zr2 = z * z / rr2
    j = 1.5 * J2 * (A * A) / rr2
    gx = k * x * (1.0 + j * (1.0 - 5.0 * zr2))
    gy = k * y * (1.0 + j * (1.0 - 5.0 * zr2))
    gz = k * z * (1.0 + j * (3.0 - 5.0 * zr2))
    return np.stack([gx, gy, gz], axis=-1)


def acceleration_ecef(r: Array, v: Array) -> Array:
    """Ballistic acceleration in the rotating Earth-fixed frame: gravity, Coriolis, centrifugal."""
    r = np.asarray(r, dtype=float)
    v = np.asarray(v, dtype=float)
    coriolis = -2.0 * np.cross(OMEGA_VEC, v)
    centrifugal = -np.cross(OMEGA_VEC, np.cross(OMEGA_VEC, r))
    return gravity(r) + coriolis + centrifugal


def range_azimuth_elevation(sensor_ecef: Array, lat: Array | float, lon: Array | float,
                            target_ecef: Array) -> tuple[Array, Array, Array]:
    """Slant range (m), azimuth (rad, clockwise from north) and elevation (rad) of targets."""
    d = np.asarray(target_ecef, dtype=float) - np.asarray(sensor_ecef, dtype=float)
    basis = enu_basis(lat, lon)
    enu = np.einsum("...ij,...j->...i", basis, d)
    e, n, u = enu[..., 0], enu[..., 1], enu[..., 2]
    rng = np.sqrt(e * e + n * n + u * u)
    return rng, np.mod(np.arctan2(e, n), 2.0 * np.pi), np.arcsin(u / np.maximum(rng, 1e-9))


def great_circle_m(lat1: Array | float, lon1: Array | float,
                   lat2: Array | float, lon2: Array | float) -> Array:
    """Great-circle distance on the mean sphere (m); haversine, inputs in radians."""
    dlat = np.asarray(lat2) - np.asarray(lat1)
    dlon = np.asarray(lon2) - np.asarray(lon1)
    h = np.sin(dlat / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin(dlon / 2) ** 2
    return np.asarray(2.0 * R_MEAN * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


def destination(lat: float, lon: float, bearing: float, distance_m: float) -> tuple[float, float]:
    """Point reached from (lat, lon) along an initial bearing (rad) on the mean sphere."""
    d = distance_m / R_MEAN
    lat2 = np.arcsin(np.sin(lat) * np.cos(d) + np.cos(lat) * np.sin(d) * np.cos(bearing))
    lon2 = lon + np.arctan2(np.sin(bearing) * np.sin(d) * np.cos(lat),
                            np.cos(d) - np.sin(lat) * np.sin(lat2))
    return float(lat2), float((lon2 + np.pi) % (2 * np.pi) - np.pi)
