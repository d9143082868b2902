"""exospec: calibrate, denoise and fit Phebus-like UV spectra of an exosphere, from Python.

The same stages as the ``exospec`` command, compiled from the same code, on
numpy arrays (results identical to the command's to the bit), the command's
``run``, ``simulate`` and ``info`` on files, and quick-look plots
(:mod:`exospec.plot`).

    >>> import exospec
    >>> d = exospec.read_input("in.h5", "fuv")
    >>> ch = exospec.Channel("fuv", d["calibration"], threads=1)
    >>> cal, den, fits = ch.process(d["counts"], d["exposure_s"], d["temperature_c"],
    ...                             altitude_km=d["altitude_km"])

Units: radiance in R/nm, brightness in rayleighs (R), wavelengths in nm,
altitudes in km, times in s, temperatures in degC (detector) or K (exosphere).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional, Sequence, Union

from . import errors
from ._core import (
    SCHEMA_VERSION,
    Calibrated,
    Calibration,
    Channel,
    Denoised,
    Fits,
    Line,
    LineComponent,
    Profiles,
    catalogue,
    default_config,
    info,
    line_mass_amu,
    line_model,
    profile,
    profile_shape,
    read_calibration,
    read_input,
    run,
    simulate,
)
from ._core import __version__
from .errors import ConfigError, Error, FileError, FileNotFound, SchemaError

PathLike = Union[str, "os.PathLike[str]"]


def _unpack(calibrated: Any) -> tuple:
    """A Calibrated, or a mapping (a dict, an h5py group of an output's /calibrated/<ch>) of its arrays."""
    if isinstance(calibrated, Calibrated):
        return (calibrated, None, None, None, None)
    if isinstance(calibrated, Mapping) or hasattr(calibrated, "keys"):
        get = (lambda k: calibrated[k] if k in calibrated else None)
        return (get("radiance"), get("variance"), get("quality"), get("scale"), get("offset"))
    raise TypeError("calibrated: expected a Calibrated (exospec.calibrate's result) or a mapping of "
                    "radiance, variance and quality")


def calibrate(counts: Any, exposure_s: Any, temperature_c: Any, calibration: Calibration, *, channel: str,
              altitude_km: Any = None, scan: Any = None, config: Optional[PathLike] = None,
              threads: int = 0) -> Calibrated:
    """Counts (P or N x P) to radiance (R/nm), variance and quality: :meth:`Channel.calibrate` of a new Channel.

    exposure_s (s) and temperature_c (detector, degC): one per spectrum or one number. Give altitude_km
    (tangent altitude, km) or scan for files of several limb scans, as `exospec run` takes them from /geometry.
    """
    ch = Channel(channel, calibration, config=config, threads=threads)
    return ch.calibrate(counts, exposure_s, temperature_c, altitude_km=altitude_km, scan=scan)


def denoise(calibrated: Any, calibration: Calibration, *, channel: str, config: Optional[PathLike] = None,
            threads: int = 0) -> Denoised:
    """Calibrated spectra to denoised radiance and variance (R/nm) with the configured method."""
    r, v, q, s, o = _unpack(calibrated)
    ch = Channel(channel, calibration, config=config, threads=threads)
    return ch.denoise(r, v, q, scale=s, offset=o)


def fit(calibrated: Any, calibration: Calibration, *, channel: str, lines: Optional[Sequence[Any]] = None,
        denoised: Any = None, altitude_km: Any = None, scan: Any = None, config: Optional[PathLike] = None,
        threads: int = 0) -> Fits:
    """Line brightness (R) with 1-sigma, centre and FWHM (nm), reduced chi2 and status of calibrated spectra.

    lines: names from :func:`catalogue` (channel), or :class:`Line` objects; None for every catalogue line.
    denoised: the denoised radiance (the fit's initial shift guesses, as in `exospec run`); None to denoise
    here first (when the configuration has the denoise stage).
    """
    r, v, q, s, o = _unpack(calibrated)
    ch = Channel(channel, calibration, config=config, threads=threads, lines=lines)
    if denoised is None and "denoise" in ch.stages:
        denoised = ch.denoise(r, v, q, scale=s, offset=o)
    return ch.fit(r, v, q, denoised=denoised, scale=s, offset=o, altitude_km=altitude_km, scan=scan)


__all__ = [
    "SCHEMA_VERSION", "Calibrated", "Calibration", "Channel", "ConfigError", "Denoised", "Error", "FileError",
    "FileNotFound", "Fits", "Line", "LineComponent", "Profiles", "SchemaError", "__version__", "calibrate",
    "catalogue", "default_config", "denoise", "errors", "fit", "info", "line_mass_amu", "line_model", "profile",
    "profile_shape", "read_calibration", "read_input", "run", "simulate",
]
