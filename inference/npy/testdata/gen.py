"""Regenerates the .npy fixtures of package npy: python3 gen.py (needs numpy)."""
import numpy as np

np.save("f4_2d.npy", np.arange(12, dtype="<f4").reshape(3, 4) - 5.5)
np.save("f8.npy", np.array([0.0, -1.5, 3.25, 1e300, -1e-300], dtype="<f8"))
np.save("f2.npy", np.array([0.0, -0.0, 1.0, -2.5, 65504.0, 6e-8, np.inf, -np.inf, np.nan], dtype="<f2"))
np.save("i1.npy", np.array([-128, -1, 0, 1, 127], dtype="i1"))
np.save("i2.npy", np.array([-32768, -1, 0, 1, 32767], dtype="<i2"))
np.save("i4.npy", np.array([-2147483648, -1, 0, 1, 2147483647], dtype="<i4"))
np.save("i8.npy", np.array([-(2**63), -1, 0, 1, 2**63 - 1], dtype="<i8"))
np.save("u1.npy", np.array([0, 1, 128, 255], dtype="u1"))
np.save("u2.npy", np.array([0, 1, 65535], dtype="<u2"))
np.save("u4.npy", np.array([0, 1, 4294967295], dtype="<u4"))
np.save("u8.npy", np.array([0, 1, 2**64 - 1], dtype="<u8"))
np.save("bool.npy", np.array([True, False, True, True]))
np.save("scalar_0d.npy", np.array(3.5, dtype="<f4"))
np.save("empty_0x3.npy", np.zeros((0, 3), dtype="<f4"))
np.save("f4_4d.npy", np.ones((1, 2, 3, 2), dtype="<f4"))
with open("v2_f4.npy", "wb") as f:
    np.lib.format.write_array(f, np.arange(6, dtype="<f4").reshape(2, 3), version=(2, 0))
with open("v3_f4.npy", "wb") as f:
    np.lib.format.write_array(f, np.arange(6, dtype="<f4").reshape(2, 3), version=(3, 0))
# Files that ReadHeader must refuse.
np.save("bad_fortran.npy", np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)))
np.save("bad_bigendian.npy", np.arange(3, dtype=">f4"))
np.save("bad_unicode.npy", np.array(["abc", "de"], dtype="<U3"))
np.save("bad_structured.npy", np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]))
np.save("bad_complex.npy", np.zeros(2, dtype="<c8"))
np.save("bad_object.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
