#!/usr/bin/env python3
"""Reads a series with pydicom for render's tests: the stored voxels and the geometry from the
DICOM tags, computed here independently of our code.

usage: series.py DIR OUTDIR

Writes OUTDIR/voxels.i16 (little-endian int16, column fastest, then row, then slice, slices
sorted along the normal) and OUTDIR/meta.json: dims, origin (first slice's Image Position),
axes (row cosine x column spacing, column cosine x row spacing, step between the first two
slices), rescale, every slice's own Image Position, and the largest deviation of the slice
steps from the first (0 for a regular grid).
"""
import json
import os
import sys

import numpy as np
import pydicom

src, out = sys.argv[1], sys.argv[2]
slices = []
paths = sorted(os.path.join(d, f) for d, _, files in os.walk(src) for f in files)
for path in paths:
    try:
        ds = pydicom.dcmread(path)
    except Exception:
        continue  # not DICOM (e.g. Philips' DIRFILE)
    if "ImagePositionPatient" not in ds or "PixelData" not in ds:
        continue
    slices.append(ds)
iop = np.array(slices[0].ImageOrientationPatient, dtype=np.float64)
row, col = iop[:3], iop[3:]
normal = np.cross(row, col)
slices.sort(key=lambda d: float(np.dot(normal, np.array(d.ImagePositionPatient, dtype=np.float64))))
ps = [float(v) for v in slices[0].PixelSpacing]  # [between rows, between columns]
ipp = np.array([[float(v) for v in d.ImagePositionPatient] for d in slices])
steps = np.diff(ipp, axis=0)
vol = np.stack([d.pixel_array.astype(np.int16) for d in slices])  # (k, j, i)
os.makedirs(out, exist_ok=True)
vol.astype("<i2").tofile(os.path.join(out, "voxels.i16"))
meta = {
    "dims": [int(slices[0].Columns), int(slices[0].Rows), len(slices)],
    "origin": ipp[0].tolist(),
    "axes": [(row * ps[1]).tolist(), (col * ps[0]).tolist(), steps[0].tolist()],
    "slope": float(slices[0].get("RescaleSlope", 1.0)),
    "intercept": float(slices[0].get("RescaleIntercept", 0.0)),
    "positions": ipp.tolist(),
    "row_cosine": row.tolist(),
    "col_cosine": col.tolist(),
    "pixel_spacing": ps,
    "step_deviation": float(np.abs(steps - steps[0]).max()) if len(steps) else 0.0,
}
with open(os.path.join(out, "meta.json"), "w") as f:
    json.dump(meta, f)
