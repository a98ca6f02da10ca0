#!/usr/bin/env python3
"""Reference window/level by pydicom, for render's tests (an implementation nobody here wrote).

usage: voi.py FILE OUTDIR MODE [CENTER WIDTH]
  MODE: LINEAR | LINEAR_EXACT | SIGMOID (window given), or LUT (the file's VOI LUT Sequence)

Writes OUTDIR/stored.i16 (stored values, little-endian int16, row by row), OUTDIR/expected.u8
(pydicom's VOI output scaled to 0-255 and rounded; MONOCHROME1 shown inverted, as PS3.3
C.7.6.3.1.2 requires for display), and OUTDIR/meta.json (size, rescale, photometric, LUT).
"""
import json
import os
import sys

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut, apply_windowing

path, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
ds = pydicom.dcmread(path)
stored = ds.pixel_array
if stored.ndim != 2:
    stored = stored[0]
if stored.dtype.itemsize > 2 or (stored.dtype == np.uint16 and stored.max() > 32767):
    sys.exit(f"{path}: stored values do not fit int16")
slope = float(ds.get("RescaleSlope", 1.0))
intercept = float(ds.get("RescaleIntercept", 0.0))
modality = apply_modality_lut(stored, ds)
meta = {
    "rows": int(ds.Rows),
    "cols": int(ds.Columns),
    "slope": slope,
    "intercept": intercept,
    "photometric": str(ds.PhotometricInterpretation),
}
if mode == "LUT":
    item = ds.VOILUTSequence[0]
    n, first, bits = [int(v) for v in item.LUTDescriptor]
    n = n or 65536
    lut = item.LUTData if isinstance(item.LUTData, (list, tuple)) else [item.LUTData]
    if not isinstance(lut[0], int):
        # LUT Data stored as OW bytes
        lut = np.frombuffer(item.LUTData, dtype="<u2" if bits > 8 else "<u2").tolist()
    # A descriptor may say 16 bits while the entries use fewer (PS3.3 C.11.2.1.1); pydicom
    # then scales by the entries' real range, and so do we.
    entries = np.asarray(lut[:n], dtype=np.float64)
    out_arr = apply_voi_lut(modality, ds, prefer_lut=True).astype(np.float64)
    depth = bits
    if bits == 16 and entries.max() < 256:
        depth = 8
    grey = out_arr / (2**depth - 1) * 255.0
    meta["lut"] = {"first_mapped": first, "bits": depth, "entries": [int(v) for v in lut[:n]]}
else:
    center, width = float(sys.argv[4]), float(sys.argv[5])
    ds.WindowCenter = center
    ds.WindowWidth = width
    ds.VOILUTFunction = mode
    out_arr = apply_windowing(modality.astype(np.float64), ds)
    bits = int(ds.BitsStored)
    if int(ds.PixelRepresentation) == 0:
        y_min, y_max = 0.0, 2.0**bits - 1
    else:
        y_min, y_max = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        y_min, y_max = y_min * slope + intercept, y_max * slope + intercept
    grey = (out_arr - y_min) / (y_max - y_min) * 255.0
    meta.update({"center": center, "width": width, "function": mode})
grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
if meta["photometric"] == "MONOCHROME1":
    grey = 255 - grey
os.makedirs(out, exist_ok=True)
stored.astype("<i2").tofile(os.path.join(out, "stored.i16"))
grey.tofile(os.path.join(out, "expected.u8"))
with open(os.path.join(out, "meta.json"), "w") as f:
    json.dump(meta, f)
