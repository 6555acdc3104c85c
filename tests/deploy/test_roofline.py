"""The int8 yardstick (issue 38, item 4): OpenVINO's own int8 kernels (a matrix product and
chains of 3×3 convolutions, quantised as an int8 export is) measured in GOP/s, run in int8."""

from __future__ import annotations

import pytest

from personkit.runtime import cpu_flags


def test_openvino_int8_kernels_are_measured_in_int8():
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    from personkit.deploy.roofline import openvino_int8_gops

    got = openvino_int8_gops(n=256, repeats=1)
    assert set(got) == {"matmul", "conv3x3 256ch", "conv3x3 512ch"}
    assert all(k["gops"] > 0 for k in got.values())
    if any("vnni" in f or f.startswith("amx") for f in cpu_flags()):
        assert {k["precision"] for k in got.values()} <= {"u8", "i8"}, got
